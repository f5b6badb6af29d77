"""LLM-prompted path: prompts, code extraction, constraint check, HTTP backend on 127.0.0.1."""

import http.server
import json
import random
import threading

from execverify_jax.data.synth import grid, llm

GOOD = """Here you go:
```python
import math

def f(x, y):
    return math.ceil(x / math.ceil(y))

print(f(7.5, 2.25))
```
"""


class FakeGen:
    def __init__(self, outs):
        self.outs, self.calls = list(outs), []

    def generate(self, prompts, sampling):
        self.calls.append((len(prompts), dict(sampling)))
        return [self.outs.pop(0) for _ in prompts]


def test_generation_prompt_bullets_follow_level():
    msgs, cons = llm.generation_prompt(grid.make_cell("str", "replace", 6), 3)
    text = msgs[1]["content"]
    assert msgs[0]["content"] == "You are a code generator."
    assert "`replace` method of the `str` type" in text and "depth >= 2" in text
    assert "exactly two functions" in text and "at least one more built-in" in text
    assert len(cons["cf_chain"]) == 3 and "nest" in text
    t1 = llm.generation_prompt(grid.make_cell("str", "replace", 1), 3)[0][1]["content"]
    assert "no if/for/while/elif" in t1 and "Do not use any other methods" in t1


def test_prompts_render_for_every_cell_and_chain_kind():
    kinds = set()
    for cell in grid.build_grid():
        msgs, cons = llm.generation_prompt(cell, cell.level)
        assert len(cons["cf_chain"]) == cell.cf_depth and cell.method in msgs[1]["content"]
        kinds.update(cons["cf_chain"])
    assert kinds == {"if", "for", "while", "if-elif"}
    assert llm.generation_prompt(cell, 5) == llm.generation_prompt(cell, 5)


def test_reference_values_match_paper_distribution():
    ints, strs = llm.reference_values(random.Random(0))
    assert 5 <= len(ints) <= 15 and len(ints) == len(strs)
    assert all(5 <= i <= 20 for i in ints)
    lens = [len(s) for _ in range(200) for s in llm.reference_values(random.Random(_))[1]]
    assert min(lens) >= 5 and max(lens) <= 15
    assert "integer values:" in llm.mutation_prompt("def f(x):\n    return x\nprint(f(1))", 0)[1]["content"]


def test_split_program_keeps_imports_and_finds_entry():
    prog, entry, args = llm.split_program(llm.extract_code(GOOD))
    assert entry == "f" and args == "7.5, 2.25" and prog.startswith("import math")
    assert llm.split_program("def f(x):\n    return x\nprint(f(1))\nprint(f(2))") is None
    assert llm.split_program("print(len([1]))") is None
    assert llm.extract_code("```python\na\n```\n```python\nb\n```", "last") == "b\n"


def test_parse_completion_checks_constraint():
    cons = llm.generation_prompt(grid.make_cell("float", "math.ceil()", 1), 0)[1]
    cand, why = llm.parse_completion(GOOD, cons, 0)
    assert why == "" and cand["inputs"] == ["7.5, 2.25"] and cand["entry"] == "f"
    bad = GOOD.replace("math.ceil(x / math.ceil(y))", "math.ceil(x / y)  # one call")
    cand, why = llm.parse_completion(bad, cons, 0)
    assert cand is None and "nested" in why and "comments" in why
    assert llm.parse_completion("no code", cons, 0) == (None, "no python block")


def test_synthesize_llm_with_fake_generator_and_mutation():
    cell = grid.make_cell("float", "math.ceil()", 1)
    mutated = GOOD.replace("f(7.5, 2.25)", "f(19.0, 6.0)")
    gen = FakeGen([GOOD, "```python\nprint(1)\n```", mutated])
    kept, reasons = llm.synthesize_llm([cell, cell], [0, 1], gen, mutate=True)
    assert len(kept) == 1 and kept[0]["inputs"] == ["7.5, 2.25", "19.0, 6.0"]
    assert sum(reasons.values()) == 1
    assert gen.calls[0][1]["temperature"] == 0.8 and gen.calls[1][1]["temperature"] == 0.4


def test_openai_backend_against_local_server():
    seen = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body, self.headers.get("Authorization")))
            if body["messages"][-1]["content"] == "fail":
                self.send_response(500)
                self.end_headers()
                return
            out = {"choices": [{"message": {"content": "echo:" + body["messages"][-1]["content"]}}]}
            data = json.dumps(out).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        cfg = llm.OpenAIConfig(base_url=f"http://127.0.0.1:{srv.server_port}", model="m", api_key="k",
                               timeout_s=5, retries=1, backoff_s=0.01, workers=4)
        gen = llm.OpenAIGenerator(cfg)
        prompts = [[{"role": "user", "content": c}] for c in ("a", "b", "fail", "c")]
        outs = gen.generate(prompts, {"temperature": 0.8})
        assert outs == ["echo:a", "echo:b", "", "echo:c"]
        assert len(gen.errors) == 1
        assert all(p == "/v1/chat/completions" and b["model"] == "m" and b["temperature"] == 0.8 and a == "Bearer k"
                   for p, b, a in seen)
        assert sum(1 for _, b, _ in seen if b["messages"][-1]["content"] == "fail") == 2  # one retry
    finally:
        srv.shutdown()
        srv.server_close()
