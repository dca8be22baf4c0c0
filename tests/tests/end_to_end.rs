//! One host, real processes: `coordinator up` (coordinator + local agent over QUIC),
//! submissions over HTTP, every verdict of every language, then a clean shutdown.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use judge_tests::{Judge, leftover_run_cgroups, processes_with_uid, uid_base};
use serde_json::{Value, json};


struct Case {
    language: &'static str,
    name: &'static str,
    source: &'static str,
    memory_mb: u64,
    verdict: &'static str,
    limit: Option<&'static str>,
}

fn cases() -> Vec<Case> {
    let c = |language, name, source, verdict, limit| Case { language, name, source, memory_mb: 256, verdict, limit };
    let mle = |language, source| Case { language, name: "mle", source, memory_mb: 64, verdict: "MLE", limit: Some("memory") };
    vec![
        // C
        c("c", "ac", "#include <stdio.h>\nint main(){long a,b;scanf(\"%ld %ld\",&a,&b);printf(\"%ld\\n\",a+b);return 0;}", "AC", None),
        c("c", "wa", "#include <stdio.h>\nint main(){long a,b;scanf(\"%ld %ld\",&a,&b);printf(\"%ld\\n\",a+b+1);return 0;}", "WA", None),
        c("c", "tle", "int main(){volatile unsigned long x=0;for(;;)x++;}", "TLE", Some("cpu")),
        c("c", "tle-wall", "#include <unistd.h>\nint main(){sleep(30);return 0;}", "TLE", Some("wall")),
        mle("c", "#include <stdlib.h>\n#include <stdio.h>\nint main(){size_t n=(size_t)512<<20;volatile char*p=malloc(n);for(size_t i=0;i<n;i+=4096)p[i]=1;printf(\"%d\\n\",p[n/2]);return 0;}"),
        c("c", "segv", "int main(){volatile int*p=0;*p=1;return 0;}", "RE", None),
        c("c", "exit", "int main(){return 3;}", "RE", None),
        c("c", "ole", "#include <stdio.h>\nint main(){for(;;)puts(\"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\");}", "OLE", Some("output")),
        c("c", "ce", "int main( {", "CE", None),
        // C++
        c("cpp", "ac", "#include <iostream>\nint main(){long a,b;std::cin>>a>>b;std::cout<<a+b<<\"\\n\";}", "AC", None),
        c("cpp", "wa", "#include <iostream>\nint main(){std::cout<<42<<\"\\n\";}", "WA", None),
        c("cpp", "tle", "int main(){volatile unsigned long x=0;for(;;)x++;}", "TLE", Some("cpu")),
        c("cpp", "tle-wall", "#include <thread>\n#include <chrono>\nint main(){std::this_thread::sleep_for(std::chrono::seconds(30));}", "TLE", Some("wall")),
        mle("cpp", "#include <vector>\n#include <cstdio>\nint main(){std::vector<char> v((size_t)512<<20, 1);std::printf(\"%d\",v[12345]);}"),
        c("cpp", "segv", "int main(){volatile int*p=nullptr;*p=1;}", "RE", None),
        c("cpp", "exit", "#include <cstdlib>\nint main(){std::exit(3);}", "RE", None),
        c("cpp", "ole", "#include <iostream>\nint main(){for(;;)std::cout<<\"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\\n\";}", "OLE", Some("output")),
        c("cpp", "ce", "int main() { return x; }", "CE", None),
        // Python
        c("python", "ac", "a, b = map(int, input().split())\nprint(a + b)\n", "AC", None),
        c("python", "wa", "print(0)\n", "WA", None),
        c("python", "tle", "while True:\n    pass\n", "TLE", Some("cpu")),
        c("python", "tle-wall", "import time\ntime.sleep(30)\n", "TLE", Some("wall")),
        mle("python", "b = b'x' * (512 << 20)\nprint(len(b))\n"),
        c("python", "segv", "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", "RE", None),
        c("python", "exit", "raise SystemExit(3)\n", "RE", None),
        c("python", "ole", "while True:\n    print('y' * 100)\n", "OLE", Some("output")),
        c("python", "ce", "def f(:\n    pass\n", "CE", None),
        // JavaScript
        c("javascript", "ac", "const [a,b]=require('fs').readFileSync(0,'utf8').trim().split(/\\s+/).map(Number);console.log(a+b);", "AC", None),
        c("javascript", "wa", "console.log(0);", "WA", None),
        c("javascript", "tle", "for(;;){}", "TLE", Some("cpu")),
        c("javascript", "tle-wall", "setTimeout(()=>{}, 30000);", "TLE", Some("wall")),
        mle("javascript", "const b = Buffer.alloc(512*1024*1024, 1); console.log(b[7]);"),
        c("javascript", "segv", "process.kill(process.pid, 'SIGSEGV');", "RE", None),
        c("javascript", "exit", "process.exit(3);", "RE", None),
        // console.log buffers in memory when the pipe is full; writeSync blocks like C does.
        c("javascript", "ole", "const s='y'.repeat(1<<16)+'\\n'; for(;;) require('fs').writeSync(1, s);", "OLE", Some("output")),
        c("javascript", "ce", "function (", "CE", None),
    ]
}

fn body(language: &str, source: &str, input: &str, expected: &str, cpu_ms: u64, wall_ms: u64, memory_mb: u64) -> Value {
    json!({
        "language": language,
        "source": source,
        "tests": [{"input": input, "expectedOutput": expected}],
        "limits": {"cpuMs": cpu_ms, "wallMs": wall_ms, "memoryMb": memory_mb},
    })
}

#[test]
fn every_verdict_in_every_language_then_a_clean_stop() {
    let judge = Judge::up(uid_base(0), &["--slots", "2"]);

    // Everything is queued at once: the agent's two slots drain the queue.
    let cases = cases();
    let ids: Vec<u64> = cases
        .iter()
        .map(|c| {
            // A CPU-bound run gets a generous wall limit, so even on a loaded machine the
            // CPU limit is the one it meets; the sleepers get a short one.
            let wall_ms = match c.limit {
                Some("cpu") => 10_000,
                Some("wall") => 1500,
                _ => 5000,
            };
            judge.submit(&body(c.language, c.source, "1 2\n", "3\n", 1000, wall_ms, c.memory_mb))
        })
        .collect();

    // Plausibility of the measurements.
    let touch64 = judge.submit(&body(
        "c",
        "#include <stdlib.h>\n#include <stdio.h>\nint main(){size_t n=(size_t)64<<20;volatile char*p=malloc(n);for(size_t i=0;i<n;i+=4096)p[i]=1;printf(\"%d\\n\",p[n/2]);return 0;}",
        "",
        "1\n",
        1000,
        3000,
        256,
    ));
    let burn300 = judge.submit(&body(
        "c",
        "#include <time.h>\n#include <stdio.h>\nint main(){while(clock()<CLOCKS_PER_SEC*3/10);puts(\"done\");return 0;}",
        "",
        "done\n",
        1000,
        3000,
        256,
    ));
    let forks = judge.submit(&body(
        "c",
        "#include <unistd.h>\n#include <stdio.h>\nint main(){int ok=0;for(int i=0;i<1000;i++){pid_t p=fork();if(p==0){pause();_exit(0);}if(p>0)ok++;}printf(\"%d\\n\",ok);return ok<1000;}",
        "",
        "1000\n",
        1000,
        3000,
        256,
    ));

    let mut failures = Vec::new();
    for (case, id) in cases.iter().zip(&ids) {
        let r = judge.result(*id, Duration::from_secs(120));
        let test = &r["tests"][0];
        let got_limit = test["limit"].as_str();
        eprintln!(
            "{:<10} {:<8} {:<3} limit={:<6} cpu={:>7}us wall={:>7}us mem={:>9}B exit={} signal={} {}",
            case.language,
            case.name,
            r["verdict"].as_str().unwrap_or("?"),
            got_limit.unwrap_or("-"),
            test["cpuTimeUs"],
            test["wallTimeUs"],
            test["peakMemoryBytes"],
            test["exitCode"],
            test["signal"],
            r["message"].as_str().unwrap_or("")
        );
        if r["verdict"] != case.verdict || (case.verdict != "CE" && got_limit != case.limit) {
            failures.push(format!(
                "{} {}: expected {} {:?}, got {} {:?}: {}",
                case.language, case.name, case.verdict, case.limit, r["verdict"], got_limit, r["message"]
            ));
        }
        match case.name {
            "ce" => assert!(!r["compileOutput"].as_str().unwrap().is_empty(), "{r}"),
            "segv" => assert_eq!(test["signal"], 11, "{r}"),
            "exit" => assert_eq!(test["exitCode"], 3, "{r}"),
            "ole" => assert!(test["stdout"].as_str().unwrap().starts_with("y"), "{r}"),
            _ => {}
        }
    }
    assert!(failures.is_empty(), "wrong verdicts:\n{}", failures.join("\n"));

    let r = judge.result(touch64, Duration::from_secs(60));
    assert_eq!(r["verdict"], "AC", "{r}");
    let peak = r["tests"][0]["peakMemoryBytes"].as_u64().unwrap();
    eprintln!("touch 64 MiB: peak {peak} bytes ({:.1} MiB)", peak as f64 / 1048576.0);
    assert!((64 << 20..=80 << 20).contains(&peak), "peak {peak} not within 64..80 MiB");

    let r = judge.result(burn300, Duration::from_secs(60));
    assert_eq!(r["verdict"], "AC", "{r}");
    let cpu = r["tests"][0]["cpuTimeUs"].as_u64().unwrap();
    eprintln!("300 ms burner: cpu {cpu} us");
    assert!((250_000..=400_000).contains(&cpu), "cpu {cpu} us not within 250..400 ms");

    let r = judge.result(forks, Duration::from_secs(60));
    eprintln!("fork 1000: {r}");
    assert_eq!(r["verdict"], "RE", "{r}");
    assert_eq!(r["tests"][0]["limit"], "processes", "{r}");
    let forked: u64 = r["tests"][0]["stdout"].as_str().unwrap().trim().parse().unwrap();
    assert!(forked < 64, "the pids limit let {forked} forks through");

    let status = judge.stop();
    assert!(status.success(), "coordinator exit status {status:?}");
    let left = processes_with_uid(uid_base(0)..uid_base(0) + 16);
    assert!(left.is_empty(), "processes of runs survived: {left:?}");
    let cgroups = leftover_run_cgroups();
    assert!(cgroups.is_empty(), "run cgroups left behind: {cgroups:?}");
}
