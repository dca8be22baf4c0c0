"""PERFORMANCE_BENCHMARK of corpus files (tests/complexity/) over /ws: one JSON line per
benchmark with the expected class, ours, the seed method's and the figures behind them.
Usage: complexity_client.py WS_URL SEED FILE [FILE...]"""
import asyncio
import json
import os
import pathlib
import re
import sys

import websockets

TIMEOUT = 300


LANGUAGES = {".py": "python", ".js": "javascript", ".c": "c"}


def header(path):
    """`expect: CLASS  input: KIND  memory: CLASS` (two spaces end a class)."""
    first = path.read_text().splitlines()[0]
    expect = re.search(r"expect:\s*(.+?)\s{2,}input:", first).group(1)
    kind = re.search(r"input:\s*(\S+)", first).group(1)
    memory = re.search(r"memory:\s*(.+?)(\s{2,}|$)", first).group(1).strip()
    return expect, kind, memory


async def bench(ws_url, path, seed):
    expect, kind, memory_expect = header(path)
    language = LANGUAGES[path.suffix]
    async with websockets.connect(ws_url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "PERFORMANCE_BENCHMARK", "algorithmCode": path.read_text(),
                                  "algorithmName": path.stem, "language": language, "inputKind": kind, "seed": seed}))
        progress = 0
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            if m["type"] == "BENCHMARK_PROGRESS":
                progress += 1
            if m["type"] in ("BENCHMARK_COMPLETED", "BENCHMARK_ERROR"):
                break
    if m["type"] == "BENCHMARK_ERROR":
        return {"file": f"{language}/{path.name}", "expect": expect, "memoryExpect": memory_expect, "error": m.get("error")}
    ca = m["complexityAnalysis"]
    sizes = [r["inputSize"] for r in m["results"] if r["success"]]
    return {
        "file": f"{language}/{path.name}", "expect": expect, "ours": ca["bestFit"],
        "confidence": ca["confidence"], "seed": m["seedMethod"]["bestFit"],
        "memoryExpect": memory_expect, "memory": m["memoryAnalysis"]["bestFit"],
        "memoryConfidence": m["memoryAnalysis"]["confidence"], "memoryMeasure": m["memoryAnalysis"].get("measure"),
        "memoryValues": [[r["inputSize"], r["callPeakBytes"]] for r in m["results"] if r["success"]],
        "sizes": [min(sizes), max(sizes)] if sizes else [], "samples": ca["samples"],
        "progress": progress, "stoppedEarly": m.get("stoppedEarly"),
        "medians": [[r["inputSize"], round(r["executionTime"], 6)] for r in m["results"] if r["success"]],
        "raw": [[r["inputSize"], r["cpuTimes"], r["emptyCallTime"]] for r in m["results"] if r["success"]],
    }


async def main():
    ws_url, seed = sys.argv[1], int(sys.argv[2])
    dump = os.environ.get("CORPUS_DUMP")
    for f in sys.argv[3:]:
        line = json.dumps(await bench(ws_url, pathlib.Path(f), seed), ensure_ascii=False)
        print(line, flush=True)
        if dump:
            with open(dump, "a") as out:
                out.write(line + "\n")


asyncio.run(main())
