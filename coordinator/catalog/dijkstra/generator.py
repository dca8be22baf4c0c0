# The benchmark's input for dijkstra (docs/websocket.md, "Input generators"): reads
# "n m seed" and prints the arguments [n, edges, source] as JSON. The built-in graph
# generator has no weights, so this one is shipped with the algorithm. A path through all
# nodes makes every node reachable (the work grows with the whole graph, not with a
# lucky unreachable part); the other m - (n - 1) edges are random, weights in [1, 100].
import json
import random
import sys

n, m, seed = map(int, sys.stdin.read().split())
rng = random.Random(seed * 1_000_003 + n)
edges = [[v - 1, v, rng.randint(1, 100)] for v in range(1, n)]
while len(edges) < m and n > 1:
    edges.append([rng.randrange(n), rng.randrange(n), rng.randint(1, 100)])
json.dump([n, edges, 0], sys.stdout, separators=(",", ":"))
