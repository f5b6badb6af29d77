"""REval prompt templates, in two styles (fields: code, invocation, invocation_abbr, line,
codeline, var).

- `execverify`: the ExecVerify authors' modified REval prompts (`evaluation/REval/prompts/
  my_{coverage,path,state,output}.txt` in github.com/justForAnonymous/ExecVerify) with the long
  "inner monologue" system prompt of their `evaluation_exec_verify.py`; answers in `<answer>` tags.
- `official`: REval's direct prompts (`prompts/direct_*.txt` of the same repository, as shipped
  with the REval replication package); completion-style, answers in `[ANSWER]` tags.

The texts are reproduced as published (they are the benchmark's prompts); only the template
mechanics are ours.
"""

from __future__ import annotations

EXECVERIFY_SYSTEM = (
    "A user will ask you to solve a task. You should first draft your thinking process (inner monologue).\n"
    "Then, generate the solution. Your response format must follow the template below:\n"
    "<reasoning>\n"
    "    Your thoughts or/and draft, like working through an exercise on scratch paper. Be as casual and as long as you want\n"
    "    until you are confident to generate a correct solution.\n"
    "</reasoning>\n"
    "<answer>\n"
    "    Final solution presented to the user.\n"
    "</answer>"
)

_F_EXAMPLE = "def f(a, b):\n    ans = a + b\n    if ans > 0:\n        ans = int(a)\n    else:\n        ans = b\n    return ans\n"
_CLASS_STATE_EXAMPLE = ("class A:\n    def __init__(self):\n        self.x = []\n    \n    def f(self, y):\n"
                        "        self.x.append(y)\n        return y\n\na = A()\nassertEqual(a.f('a'), 'a')\n")

EXECVERIFY = {
    "coverage": (
        "You are given a Python function and a question about its execution behavior.\n"
        "Your task is to answer the question with YES or NO.\n\n"
        "First, simulate the execution of the provided code using the given input, even if the function is incorrect or incomplete.\n"
        "Then, determine whether the specified line is executed.\n\n\n"
        "[PYTHON]\n{code}\n{invocation}\n[/PYTHON]\n\n"
        "[QUESTION]\nIs Line {line} ({codeline}) executed when {invocation_abbr} is called?\n[/QUESTION]\n\n"
        "Output Format:\nYour output must strictly follow the format below:\n\n"
        "<reasoning>your step-by-step reasoning process</reasoning>\n<answer>YES or NO</answer>"),
    "path": (
        "You are a Python execution tracer. You will be given a function, an invocation, and a target line of code. "
        "Your goal is to determine the next line to be executed.\n\n"
        "Analyze the provided Python code and its invocation to answer the question.\n\n"
        "Example:\n[PYTHON]\ndef f(a, b):\n  ans = a + b\n  if ans > 0:\n      ans = int(a)\n  else:\n      ans = b\n  return ans\n\n"
        "f(1.1, 2)\n[/PYTHON]\n[QUESTION]\nTracing the call f(1.1, 2), what line is executed immediately after ans = int(a)?\n"
        "[/QUESTION]\n\nCorrect Response:\n<reasoning>\n"
        "1. The function `f` is called with `a=1.1` and `b=2`.\n"
        "2. `ans` is calculated as `1.1 + 2`, which is `3.1`.\n"
        "3. The condition `ans > 0` (i.e., `3.1 > 0`) is true.\n"
        "4. Execution enters the `if` block.\n"
        "5. The target line `ans = int(a)` is executed.\n"
        "6. After the `if` block completes, execution proceeds to the next statement outside the `if/else` structure.\n"
        "7. The next line is `return ans`.\n</reasoning>\n<answer>\nreturn ans\n</answer>\n\n"
        "Your Task:\n[PYTHON]\n{code}\n{invocation}\n[/PYTHON]\n[QUESTION]\n"
        "During the execution of {invocation_abbr}, what line of code is executed immediately after {codeline}?\n"
        "[/QUESTION]\n\nRules:\n\n"
        "1. If {codeline} is never reached during the execution, the answer is -1.\n\n"
        "2. If the function terminates immediately after {codeline} (e.g., it is a return statement or the final line), "
        "the answer is -1.\n\n"
        "3. Otherwise, the answer is the verbatim source code of the next line. Do not use line numbers.\n\n\n"
        "Format your response strictly as follows, with no other text:\n<reasoning>\n"
        "Your step-by-step reasoning for the execution flow.\n</reasoning>\n<answer>\nThe raw code statement or -1.\n</answer>\n"),
    "state": (
        "You are given a Python function and a question about its execution behavior.\n"
        "Your task is to simulate the code execution and answer in the format: value; type\n"
        "If the specified line is not executed, answer with: Nil\n\n"
        "There may be multiple possible answers, but you should output only one.\n\n"
        "Following the examples:\nExample one:\n[PYTHON]\n" + _F_EXAMPLE + "\nf(1.1, 2)\n[/PYTHON]\n[QUESTION]\n"
        "Is Line 4 (        ans = int(a)) executed when f(1.1, 2) is called? If so, what is the value and type of the "
        "variable ans after Line 4 is executed? \nIf the code statement is not executed, answer Nil.\n[/QUESTION]\n"
        "[ANSWER]\n1; int\n[/ANSWER]\n\nExample two:\n[PYTHON]\n" + _F_EXAMPLE + "\nf(1.1, -2)\n[/PYTHON]\n[QUESTION]\n"
        "Is Line 4 (        ans = int(a)) executed when f(1.1, -2) is called? If so, what is the value and type of the "
        "variable ans after Line 4 is executed?\nIf the code statement is not executed, answer Nil.\n[/QUESTION]\n"
        "[ANSWER]\nNil\n[/ANSWER]\n\nExample three:\n[PYTHON]\n" + _CLASS_STATE_EXAMPLE + "[/PYTHON]\n[QUESTION]\n"
        "Is Line 6 (        self.x.append(y)) executed when the above test code is called? If so, what is the value "
        "and type of the variable self.x after Line 6 is executed?\nIf the code statement is not executed, answer Nil.\n"
        "[/QUESTION]\n[ANSWER]\n['a']; list\n[/ANSWER]\n\n"
        "Now simulate the code execution and answer the question below.\n[PYTHON]\n{code}\n{invocation}\n[/PYTHON]\n\n"
        "[QUESTION]\nIs Line {line} ({codeline}) executed when {invocation_abbr} is called? If so, what is the value "
        "and type of the variable {var} after Line {line} is executed?\nIf the code statement is not executed, answer Nil.\n"
        "[/QUESTION]\n\nFormat your response strictly as follows:\n"
        "<reasoning>your step-by-step reasoning here</reasoning>\n<answer>your answer </answer>"),
    "output": (
        "You are given a Python function and test code that includes input(s) to the function.\n"
        "Your task is to complete the assertions in the test code with the expected output values.\n"
        "Try to execute the code, even if the function is incorrect or incomplete.\n\n"
        "Follow the style shown in the examples below.\n\n\n"
        "Example one:\n[PYTHON]\ndef g(s):\n    return s + \"a\"\n\nassert g(\"x9j\") == ??\n[/PYTHON]\n"
        "[ANSWER]\nassert g(\"x9j\") == \"x9ja\"\n[/ANSWER]\n\n"
        "Example two:\n[PYTHON]\nclass A:\n    def __init__(self, x):\n        self.x = x\n\n    def f(self, y):\n"
        "        return self.x + y\n\n# Test code starts here. Only write the completed test code in your answer.\n"
        "a = A(3)\nassertEqual(a.f(2), ??)\nassertEqual(a.f(4), ??)\n[/PYTHON]\n"
        "[ANSWER]\na = A(3)\nassertEqual(a.f(2), 5)\nassertEqual(a.f(4), 7)\n[/ANSWER]\n\n"
        "Now complete the following assertions:\n[PYTHON]\n{code}\n{invocation}\n[/PYTHON]\n\n"
        "Format your response strictly as follows:\n"
        "<reasoning>your step-by-step reasoning here</reasoning>\n<answer>the complete assertion statements</answer>"),
}

_OFFICIAL_HEAD = ("considering executing the provided code on the given input, even if the function is incorrect "
                  "or incomplete. Do NOT output any extra information.")
_RAW = "\noutput the raw string, no markdown format.\n"

OFFICIAL = {
    "coverage": (
        "You are given a Python function and a question on the function. Answer the question with only YES or NO, "
        + _OFFICIAL_HEAD + " Provide your answer in [ANSWER] and [/ANSWER] tags, following the examples." + _RAW +
        "[PYTHON]\ndef f(x):\n    if x > 2:\n        return x*2\n    else:\n        return x\nf(3)\n[/PYTHON]\n"
        "[QUESTION]\nIs Line 3 (        return x*2) executed when f(3) is called?\n[/QUESTION]\n[ANSWER]\nYES\n[/ANSWER]\n\n"
        "[PYTHON]\nclass A:\n    def g(self, x):\n        if x > 2:\n            return self.h(x)\n        else:\n"
        "            return x\n\n    def h(self, y):\n        return y*2\n\na = A()\nassertEqual(a.g(1), 1)\n[/PYTHON]\n"
        "[QUESTION]\nIs Line 9 (        return y*2) executed when the above test code is called?\n[/QUESTION]\n"
        "[ANSWER]\nNO\n[/ANSWER]\n\n"
        "[PYTHON]\n{code}\n{invocation}\n[/PYTHON]\n[QUESTION]\nIs Line {line} ({codeline}) executed when "
        "{invocation_abbr} is called?\n[/QUESTION]\n[ANSWER]"),
    "path": (
        "You are given a Python function and a question on the function. Answer the question with only one line of "
        "code, " + _OFFICIAL_HEAD + " Provide your answer in [ANSWER] and [/ANSWER] tags, following the examples." + _RAW +
        "[PYTHON]\n" + _F_EXAMPLE + "\nf(1.1, 2)\n[/PYTHON]\n[QUESTION]\nIf the line `        ans = int(a)` is executed "
        "when f(1.1, 2) is called, answer with the next line of code to be executed inside the function. Do NOT answer "
        "lines in the test code. If not or program terminates after this line, answer with -1.\n[/QUESTION]\n"
        "[ANSWER]\nreturn ans\n[/ANSWER]\n\n"
        "[PYTHON]\n" + _F_EXAMPLE + "\nf(1.1, -2)\n[/PYTHON]\n[QUESTION]\nIf the line `        ans = int(a)` is executed "
        "when f(1.1, -2) is called, answer with the next line of code to be executed inside the function. Do NOT answer "
        "lines in the test code. If not or program terminates after this line, answer with -1.\n[/QUESTION]\n"
        "[ANSWER]\n-1\n[/ANSWER]\n\n"
        "[PYTHON]\nclass A:\n    def f(self, x):\n        z = self.g(x)\n        return z\n    \n    def g(self, y):\n"
        "        return y*2\n\na = A()\nassertEqual(a.f(3), 6)\n[/PYTHON]\n[QUESTION]\nIf the line `        z = self.g(x)` "
        "is executed when the above test code is called, answer with the next line of code to be executed inside the "
        "function. Do NOT answer lines in the test code. If not or program terminates after this line, answer with -1.\n"
        "[/QUESTION]\n[ANSWER]\nreturn y*2\n[/ANSWER]\n\n"
        "[PYTHON]\n{code}\n{invocation}\n[/PYTHON]\n[QUESTION]\nIf the line `{codeline}` is executed when "
        "{invocation_abbr} is called, answer with the next line of code to be executed inside the function. Do NOT "
        "answer lines in the test code. If not or program terminates after this line, answer with -1.\n[/QUESTION]\n[ANSWER]"),
    "state": (
        "You are given a Python function and a question on the function. Answer the question in \"value; type\" format, "
        + _OFFICIAL_HEAD.replace(" Do NOT", " Make sure the value is a valid Python constant and the type is a valid "
                                 "Python class name. There may be multiple answers, but you should only output one. Do NOT")
        + " Provide your answer in [ANSWER] and [/ANSWER] tags, following the examples." + _RAW +
        "[PYTHON]\n" + _F_EXAMPLE + "\nf(1.1, 2)\n[/PYTHON]\n[QUESTION]\nIs Line 4 (        ans = int(a)) executed when "
        "f(1.1, 2) is called? If so, what is the value and type of the variable ans after Line 4 is executed? If not, "
        "answer Nil.\n[/QUESTION]\n[ANSWER]\n1; int\n[/ANSWER]\n\n"
        "[PYTHON]\n" + _F_EXAMPLE + "\nf(1.1, -2)\n[/PYTHON]\n[QUESTION]\nIs Line 4 (        ans = int(a)) executed when "
        "f(1.1, -2) is called? If so, what is the value and type of the variable ans after Line 4 is executed? If not, "
        "answer Nil.\n[/QUESTION]\n[ANSWER]\nNil\n[/ANSWER]\n\n"
        "[PYTHON]\n" + _CLASS_STATE_EXAMPLE + "[/PYTHON]\n[QUESTION]\nIs Line 6 (        self.x.append(y)) executed when "
        "the above test code is called? If so, what is the value and type of the variable self.x after Line 6 is "
        "executed? If not, answer Nil.\n[/QUESTION]\n[ANSWER]\n['a']; list\n[/ANSWER]\n\n"
        "[PYTHON]\n{code}\n{invocation}\n[/PYTHON]\n[QUESTION]\nIs Line {line} ({codeline}) executed when "
        "{invocation_abbr} is called? If so, what is the value and type of the variable {var} after Line {line} is "
        "executed? If not, answer Nil.\n[/QUESTION]\n[ANSWER]"),
    "output": (
        "You are given a Python function and test code containing inputs to the function. Complete the assertion in the "
        "test code by just replacing the question marks with your answers, " + _OFFICIAL_HEAD +
        " Do NOT modify any other parts of the test code. Provide your answer as the completed code snippet in "
        "[ANSWER] and [/ANSWER] tags, following the examples." + _RAW +
        "[PYTHON]\ndef g(s):\n    return s + \"a\"\n\nassert g(\"x9j\") == ??\n[/PYTHON]\n"
        "[ANSWER]\nassert g(\"x9j\") == \"x9ja\"\n[/ANSWER]\n\n"
        "[PYTHON]\nclass A:\n    def __init__(self, x):\n        self.x = x\n\n    def f(self, y):\n        return self.x + y\n\n"
        "# Test code starts here. Only write the completed test code in your answer.\na = A(3)\nassertEqual(a.f(2), ??)\n"
        "assertEqual(a.f(4), ??)\n[/PYTHON]\n[ANSWER]\na = A(3)\nassertEqual(a.f(2), 5)\nassertEqual(a.f(4), 7)\n"
        "[/ANSWER]\n\n[PYTHON]\n{code}\n{invocation}\n[/PYTHON]\n[ANSWER]"),
}


def render(style: str, task: str, **fields: object) -> str:
    """The prompt text of a REval task in the given style."""
    table = EXECVERIFY if style == "execverify" else OFFICIAL
    return table[task].format(**fields)
