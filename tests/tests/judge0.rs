//! The Judge0-compatible API through `coordinator up` with plain HTTP, as an existing
//! Judge0 client would use it: the documented examples, then hello world (AC), a wrong
//! answer (WA) and each language's typical runtime error (RE) in every language, and a
//! callback PUT to a listener of the test's own.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use judge_tests::{Judge, uid_base};
use serde_json::{Value, json};


fn post(judge: &Judge, path: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
        .post(judge.url(path))
        .header("X-Auth-Token", "anything")
        .json(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

fn get(judge: &Judge, path: &str) -> (u16, Value) {
    let r = reqwest::blocking::get(judge.url(path)).unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

/// Polls a token until its status is past Processing.
fn finished(judge: &Judge, token: &str, fields: &str, deadline: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (status, v) = get(judge, &format!("/submissions/{token}?fields={fields},status_id"));
        assert_eq!(status, 200, "{v}");
        if v["status_id"].as_u64().is_some_and(|s| s >= 3) {
            return v;
        }
        assert!(start.elapsed() < deadline, "{token} not finished in {deadline:?}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Case {
    language_id: u32,
    name: &'static str,
    source: &'static str,
    status: u64,
    /// In stderr or message: what the runtime error says.
    says: &'static str,
}

fn cases() -> Vec<Case> {
    let c = |language_id, name, source, status, says| Case { language_id, name, source, status, says };
    vec![
        c(50, "ac", "#include <stdio.h>\nint main(){printf(\"hello, world\\n\");return 0;}", 3, ""),
        c(50, "wa", "#include <stdio.h>\nint main(){printf(\"hello\\n\");return 0;}", 4, ""),
        c(50, "re", "int main(){volatile int*p=0;*p=1;return 0;}", 7, "SIGSEGV"),
        c(54, "ac", "#include <iostream>\nint main(){std::cout<<\"hello, world\"<<std::endl;}", 3, ""),
        c(54, "wa", "#include <iostream>\nint main(){std::cout<<\"hello\\n\";}", 4, ""),
        c(54, "re", "#include <vector>\nint main(){std::vector<int> v;return v.at(3);}", 10, "out_of_range"),
        c(1020, "ac", "#include <iostream>\n#include <span>\nint main(){int a[]{1};std::span s{a};std::cout<<\"hello, world\\n\";return int(s.size())-1;}", 3, ""),
        c(1020, "wa", "#include <iostream>\nint main(){std::cout<<\"hello\\n\";}", 4, ""),
        c(1020, "re", "#include <cstdlib>\nint main(){std::abort();}", 10, "SIGABRT"),
        c(71, "ac", "print('hello, world')\n", 3, ""),
        c(71, "wa", "print('hello')\n", 4, ""),
        c(71, "re", "def f():\n    return 1 / 0\nf()\n", 11, "ZeroDivisionError"),
        c(63, "ac", "console.log('hello, world');", 3, ""),
        c(63, "wa", "console.log('hello');", 4, ""),
        c(63, "re", "null.x;", 11, "TypeError"),
        c(62, "ac", "public class Main { public static void main(String[] a) { System.out.println(\"hello, world\"); } }", 3, ""),
        c(62, "wa", "public class Main { public static void main(String[] a) { System.out.println(\"hello\"); } }", 4, ""),
        c(62, "re", "public class Main { public static void main(String[] a) { int[] x = new int[1]; System.out.println(x[2]); } }", 11, "ArrayIndexOutOfBoundsException"),
        c(73, "ac", "fn main() { println!(\"hello, world\"); }", 3, ""),
        c(73, "wa", "fn main() { println!(\"hello\"); }", 4, ""),
        c(73, "re", "fn main() { let v: Vec<i32> = Vec::new(); let i = std::env::args().count() + 2; println!(\"{}\", v[i]); }", 11, "panicked"),
        c(60, "ac", "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"hello, world\") }\n", 3, ""),
        c(60, "wa", "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"hello\") }\n", 4, ""),
        c(60, "re", "package main\nfunc main() { var m map[string]int; m[\"a\"] = 1 }\n", 11, "panic"),
    ]
}

/// Accepts one HTTP request on `listener` and returns its request line and JSON body.
fn accept_one(listener: &std::net::TcpListener) -> (String, Value) {
    let (stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let mut stream = stream;
    stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").unwrap();
    (line, serde_json::from_slice(&body).unwrap())
}

#[test]
fn judge0_clients_work_unchanged_in_every_language() {
    let judge = Judge::up(uid_base(1), &["--slots", "2"]);

    // The documented examples: a wait=true submission answers with the default fields.
    let doc = json!({
        "source_code": "#include <stdio.h>\n\nint main(void) {\n  char name[10];\n  scanf(\"%s\", name);\n  printf(\"hello, %s\\n\", name);\n  return 0;\n}",
        "language_id": "50",
        "stdin": "Judge0",
        "expected_output": "hello, Judge0",
    });
    let (status, v) = post(&judge, "/submissions?base64_encoded=false&wait=true", &doc);
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["status"], json!({"id": 3, "description": "Accepted"}), "{v}");
    assert_eq!(v["stdout"], "hello, Judge0\n");
    assert!(v["time"].as_str().unwrap().parse::<f64>().unwrap() < 1.0, "{v}");
    assert!(v["memory"].as_u64().unwrap() > 0, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();

    // Base64 both ways.
    let b64 = json!({
        "source_code": "I2luY2x1ZGUgPHN0ZGlvLmg+CgppbnQgbWFpbih2b2lkKSB7CiAgY2hhciBuYW1lWzEwXTsKICBzY2FuZigiJXMiLCBuYW1lKTsKICBwcmludGYoImhlbGxvLCAlc1xuIiwgbmFtZSk7CiAgcmV0dXJuIDA7Cn0=",
        "language_id": 50,
        "stdin": "SnVkZ2Uw",
    });
    let (status, v) = post(&judge, "/submissions?base64_encoded=true", &b64);
    assert_eq!(status, 201, "{v}");
    let b64_token = v["token"].as_str().unwrap().to_owned();
    let v = finished(&judge, &b64_token, "stdout,stdin", Duration::from_secs(60));
    let (_, v2) = get(&judge, &format!("/submissions/{b64_token}?base64_encoded=true&fields=stdout,stdin,status"));
    assert_eq!(v2["stdout"], "aGVsbG8sIEp1ZGdlMAo=", "{v} {v2}");
    assert_eq!(v2["stdin"], "SnVkZ2Uw");
    assert_eq!(v2["status"]["id"], 3, "no expected_output: a normal end is Accepted");

    // GET with fields.
    let (status, v) = get(&judge, &format!("/submissions/{token}?fields=stdout,status_id,language_id,wall_time"));
    assert_eq!(status, 200);
    assert_eq!(v.as_object().unwrap().len(), 4, "{v}");
    assert_eq!(v["language_id"], 50);

    // A callback: PUT to our listener with the result.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let callback = format!("http://{}/judge0-callback", listener.local_addr().unwrap());
    let (status, v) = post(
        &judge,
        "/submissions",
        &json!({"source_code": "print(input()[::-1])", "language_id": 71, "stdin": "abc", "expected_output": "cba", "callback_url": callback}),
    );
    assert_eq!(status, 201, "{v}");
    let (request_line, body) = accept_one(&listener);
    assert!(request_line.starts_with("PUT /judge0-callback "), "{request_line}");
    assert_eq!(body["token"], v["token"]);
    assert_eq!(body["status"]["id"], 3, "{body}");
    assert_eq!(body["stdout"], "cba\n");

    // Every language through a batch: AC, WA and its typical runtime error.
    let cases = cases();
    let mut tokens = Vec::new();
    for chunk in cases.chunks(8) {
        let submissions: Vec<Value> = chunk
            .iter()
            .map(|c| json!({"source_code": c.source, "language_id": c.language_id, "expected_output": "hello, world\n", "cpu_time_limit": 5, "memory_limit": 256000}))
            .collect();
        let (status, answer) = post(&judge, "/submissions/batch", &json!({ "submissions": submissions }));
        assert_eq!(status, 201, "{answer}");
        for a in answer.as_array().unwrap() {
            tokens.push(a["token"].as_str().unwrap_or_else(|| panic!("batch item refused: {a}")).to_owned());
        }
    }
    let fields = "status,stdout,stderr,message,compile_output,time,memory,exit_code,exit_signal";
    for (c, token) in cases.iter().zip(&tokens) {
        let v = finished(&judge, token, fields, Duration::from_secs(180));
        let what = format!("language {} {}: {v}", c.language_id, c.name);
        assert_eq!(v["status"]["id"], c.status, "{what}");
        if !c.says.is_empty() {
            let text = format!("{} {}", v["stderr"].as_str().unwrap_or(""), v["message"].as_str().unwrap_or(""));
            assert!(text.contains(c.says), "{what}: should mention {:?}", c.says);
        }
        if c.name == "ac" {
            eprintln!("judge0 e2e: language {} hello world: time {} s, memory {} KB", c.language_id, v["time"], v["memory"]);
        }
    }
    let joined = tokens[..3].join(",");
    let (status, v) = get(&judge, &format!("/submissions/batch?tokens={joined}&fields=token,status"));
    assert_eq!(status, 200);
    assert_eq!(v["submissions"].as_array().unwrap().len(), 3);
    assert_eq!(v["submissions"][0]["status"]["id"], 3);

    let (_, page) = get(&judge, "/submissions?page=1&per_page=5&fields=token");
    assert_eq!(page["submissions"].as_array().unwrap().len(), 5);
    assert_eq!(page["meta"]["total_count"], tokens.len() + 3);

    // Every language of the table is offered, with its version.
    let (_, langs) = get(&judge, "/languages");
    assert_eq!(langs.as_array().unwrap().len(), 8, "{langs}");
    let (_, about) = get(&judge, "/about");
    assert_eq!(about["version"], "1.13.1");
    let (_, workers) = get(&judge, "/workers");
    assert_eq!(workers[0]["available"], 2);

    assert!(judge.stop().success());
}
