"""Everything a user copies out of README.md, docs/*.md and examples/ is checked
mechanically against the binary (ANEMONE_BIN): flags, ANEMONE_* variables,
metric names and labels, the Grafana dashboard's queries, the examples and
the answers shown under them, relative links and paths, and docs/DEPLOY.md's
manifests. The items are found by scanning the documents at collection time,
so a new flag, link or example block is checked without changing this file.

test_cli_docs.py, test_backends_docs.py, test_bench_docs.py and
test_deploy_security_docs.py already run many documented commands (models
--backends auto, inspect/infer on the README model, bench's flags, TLS, the
Dockerfile and the manifests' probes): they are not repeated here. Answers are
checked against numpy (the OCR example: against ONNX Runtime's Python API, in
its own client), never against anemone's own earlier answers.

tritonserver 2.51 (nvidia-pytriton 0.7.0, 2026-12-05): `tritonserver --help`
lists the 87 flags kept in fixtures/artifacts_match/, against which Triton's
flags are checked below.

A test marked xfail(strict=True, reason="DEFECT: ...") is a place where the
binary does not do what a document says (file and line in the reason)."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import requests
import yaml
from onnx import TensorProto as T
from onnx import helper as h
from prometheus_client.parser import text_string_to_metric_families
from serve_support import ROOT, start_serve, stop_serve, wait_ready

BIN = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
HERE = Path(__file__).resolve().parent / "fixtures/artifacts_match"
SUBS = ["serve", "infer", "inspect", "models", "doctor", "bench", "config show"]


# ------------------------------------------------------------------ reading the documents

@lru_cache(None)
def text(doc):
    return Path(doc).read_text()


@lru_cache(None)
def blocks(doc):
    """Fenced code blocks: [(line of the fence, [(line, text), ...])]."""
    out, current = [], None
    for n, line in enumerate(text(doc).splitlines(), 1):
        if line.lstrip().startswith("```"):
            if current is None:
                current = (n, [])
            else:
                out.append(current)
                current = None
        elif current is not None:
            current[1].append((n, line))
    return out


@lru_cache(None)
def in_blocks(doc):
    return {n for start, lines in blocks(doc) for n in [start] + [m for m, _ in lines]}


def spans(doc):
    """Inline code spans outside code blocks (they may cross a line end): (line, span)."""
    body = text(doc)
    for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", body):
        line = body.count("\n", 0, m.start()) + 1
        if line not in in_blocks(doc):
            yield line, m.group(1).replace("\n", " ")


def joined(lines):
    """Commands of a block (continuation lines and quoted bodies joined), each with the `# ...`
    lines that follow it: [(line, command, [comment, ...])]."""
    out, buf = [], None
    for n, line in lines:
        if buf is None and line.strip().startswith("#"):
            if out:
                out[-1][2].append(re.sub(r"^#\s?", "", line.strip()))
            continue
        if buf is None and not line.strip():
            continue
        buf, first = (line, n) if buf is None else (buf + "\n" + line, first)
        if buf.count("'") % 2 == 0 and not buf.rstrip().endswith("\\"):
            out.append((first, re.sub(r"\s+#\s.*$", "", buf) if "'" not in buf else buf, []))
            buf = None
    return out


def commands(doc):
    return [(n, c) for _, lines in blocks(doc) for n, c, _ in joined(lines)]


SUB_RE = re.compile(r"(?:(?<![\w/.-])anemone|anemone-cli\s+--|--bin\s+anemone\s+--|target/(?:release|debug)/anemone"
                    r"|/usr/local/bin/anemone)\s+(serve|infer|inspect|models|doctor|bench|config\s+show)(?=\s|$)")


def invocations(doc):
    """(line, subcommand, arguments, from a code block?) of every `anemone <sub> ...`."""
    found = []
    for line, cmd in commands(doc):
        for m in SUB_RE.finditer(cmd):
            rest = re.split(r"\s+(?:\|(?!\s*-)|&&|;|#|>|2>|&(?=\s|$))", cmd[m.end():])[0]
            found.append((line, " ".join(m.group(1).split()), rest.replace("\\\n", " ").strip(), True))
    for line, span in spans(doc):
        found += [(line, " ".join(m.group(1).split()), span[m.end():].strip(), False) for m in SUB_RE.finditer(span)]
    return found


def where(doc, line):
    return f"{Path(doc).name}:{line}"


# ------------------------------------------------------------------ running the binary

def anemone(*args, env=None, timeout=60, cwd=None):
    full = {k: v for k, v in os.environ.items() if not k.startswith("ANEMONE_")}
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, env={**full, **(env or {})},
                          timeout=timeout, cwd=cwd)


@lru_cache(None)
def help_of(sub):
    return anemone(*sub.split(), "--help").stdout


def has_flag(help_text, flag):
    return re.search(re.escape(flag) + r"(?![\w-])", help_text) is not None


def parse_error(sub, args):
    """clap's verdict on `anemone <sub> ARGS` without running it: `--help` last makes clap parse
    (checking every value) and then print the help. None when accepted."""
    if sub == "config show" and args[:1] == ["--"]:
        sub, args = "serve", args[1:]
    p = anemone(*sub.split(), *args, "--help")
    return None if p.returncode == 0 else (p.stderr.strip().splitlines() or ["?"])[0]


def config_show(args, env=None):
    p = anemone("config", "show", "--json", "--", *args, env=env)
    assert p.returncode == 0, p.stderr
    return {s["key"]: s["value"] for s in json.loads(p.stdout)["settings"]}


# ------------------------------------------------------------------ 1. flags

TRITON_FLAGS = [l.strip() for l in (HERE / "tritonserver_2.51_flags.txt").read_text().splitlines()
                if l.startswith("--")]
_FROM = text(ROOT / "docs/FROM_TRITON.md")
TRITON_IGNORED = re.findall(r"--[a-z][\w-]+", re.search(r"taken\s+off the command line(.*?)Any other of Triton's",
                                                         _FROM, re.S).group(1))
TRITON_REPLACED = re.findall(r"^\| `(--(?:model-load-gpu-limit|host-policy))`", _FROM, re.M)
# Other tools' flags: the tool is named in the same span or command, or (these) in the paragraph
# or the 40 lines above it.
TOOLS = r"\b(cargo|curl|docker|kubectl|perf|valgrind|ncu|nsys|perf_analyzer|pip|kubernetes-validate|rustc|hadolint|pytest|uv|unshare)\b"
NEARBY = {"--features": "cargo|feature", "--locked": "cargo|rust:", "--cfg": "rustdoc|cargo",
          "--inclusive": "callgrind", "--streaming": "perf_analyzer", "--shared-memory": "perf_analyzer",
          "--binary": "scripts/nginx_rolling.py",
          "--warm-up-time": "cargo bench|bench binar", "--measurement-time": "cargo bench|bench binar",
          "--runs": "scripts/memory_standby.py", "--max-growth-mib": "scripts/soak.sh"}
# Spans known not to parse as written (none since RELIABILITY.md:46 was fixed in session 41).
KNOWN_BAD_SPANS = set()


def around(doc, line):
    lines = text(doc).splitlines()
    end = line - 1
    while end + 1 < len(lines) and lines[end + 1].strip():
        end += 1
    return "\n".join(lines[max(0, line - 41):end + 1])


def unexplained_flags(doc):
    helps = {s: help_of(s) for s in SUBS}
    contexts = invocations(doc)
    bad = []
    for line, snippet in commands(doc) + list(spans(doc)):
        script = re.search(r"scripts/[\w/.-]+\.(?:py|sh)", snippet)
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*[a-z0-9])", snippet):
            ctx = [s for l, s, a, _ in contexts if l == line and flag in a]
            if ctx:
                sub = "serve" if ctx[0] == "config show" and "--url" not in snippet else ctx[0]
                ok = has_flag(helps[sub], flag) or (sub == "config show" and flag in ("--json", "--url"))
            elif script:  # the script's own, or a serve flag it passes on (scripts/alloc_ab.sh)
                ok = (ROOT / script.group(0)).exists() and flag in (ROOT / script.group(0)).read_text() \
                    or has_flag(helps["serve"], flag)
            elif flag in NEARBY and re.search(NEARBY[flag], around(doc, line)):
                tool = re.search(NEARBY[flag], around(doc, line)).group(0)
                ok = not tool.startswith("scripts/") or flag in (ROOT / tool).read_text()
            else:
                ok = has_flag("".join(helps.values()), flag) or flag in TRITON_IGNORED + TRITON_REPLACED or \
                    re.search(TOOLS, snippet)
            if not ok:
                bad.append((where(doc, line), flag))
    return bad


def unparsed_command_lines(doc):
    bad = []
    for line, sub, args, in_block in invocations(doc):
        if in_block and not args.endswith("`"):
            err = parse_error(sub, shlex.split(re.sub(r"\$\{?\w+\}?", "x", re.sub(r"<[^>]*>", "x", args))))
            bad += [(where(doc, line), sub, args, err)] if err else []
    for line, span in spans(doc):
        if span in KNOWN_BAD_SPANS or not re.match(r"--[a-z][\w-]*[ =][^-\s]", span) or \
                re.search(r"[A-Z]{2,}|<|\.\.\.|…|\[|\$|\bN\b", span.replace("ISO8601", "").replace("TIMESTAMPS", "")):
            continue
        flag = re.match(r"--[\w-]+", span).group(0)
        sub = next((s for s in SUBS[:-1] if has_flag(help_of(s), flag)), None)
        alts = re.match(r"(--[\w-]+)([ =])(\S+\|\S+)$", span.replace("\\|", "|"))
        for args in ([alts.group(1) + alts.group(2) + v for v in alts.group(3).split("|")] if alts else [span]):
            err = sub and parse_error(sub, shlex.split(args))
            bad += [(where(doc, line), sub, args, err)] if err else []
    return bad


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_flag_and_command_line_of_a_document_is_one_anemone_takes(doc):
    """Every `--flag` of a code block or inline span: after `anemone <sub>` it is in that
    subcommand's --help (after `config show --`: serve's); beside `scripts/x` it is that script's;
    elsewhere it is an anemone flag, one of Triton's that FROM_TRITON.md lists as taken or
    replaced, or a flag of a tool named beside it (cargo, curl, perf_analyzer, ...). Then clap
    accepts every `anemone <sub> ...` of a code block (placeholders `<...>`, `$T` filled in),
    every inline `--flag value` without placeholders, and each value of a `--flag a|b|c`."""
    assert unexplained_flags(doc) == []
    assert unparsed_command_lines(doc) == []


def test_max_decoding_bytes_takes_the_values_the_docs_write():
    """RELIABILITY.md:46 `--max-decoding-bytes 64MiB` (it wrote `64 MiB`, refused, before session
    41); CONFIGURATION.md: byte sizes take a number of bytes or one with a unit, as the other byte
    flags do."""
    for flag in ("--max-request-bytes", "--max-stream-buffer-bytes", "--memory-budget", "--response-cache-byte-size"):
        assert parse_error("serve", [flag, "64MiB"]) is None, flag
    written = [s.split(" ", 1)[1] for d in DOCS for _, s in spans(d) if re.match(r"--max-decoding-bytes \S", s)]
    assert [(v, e) for v in written for e in [parse_error("serve", ["--max-decoding-bytes", v.replace(" ", "")])]
            if e] == []


def test_tritons_flags_for_its_own_internals_start_serve_with_one_warning_naming_each(tmp_path):
    """FROM_TRITON.md: these flags "are taken off the command line with their values, and the
    start-up log says so in one warning naming each and why ("not used by anemone (they change no
    answer)")"; under AIP_MODE=PREDICTION anemone "warns at start-up that it serves no Vertex AI
    route". All on one command line, `--flag value` and `--flag=value` alternately."""
    (tmp_path / "repo").mkdir()
    args = [a for i, f in enumerate(TRITON_IGNORED) for a in ([f"{f}=1"] if i % 2 else [f, "1"])]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ANEMONE_")}, "AIP_MODE": "PREDICTION"}
    proc = subprocess.Popen([str(BIN), "serve", "--model-repository", tmp_path / "repo", "--http-port", "0",
                             "--grpc-port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        assert "HTTP listening on" in proc.stdout.readline()
    finally:
        proc.terminate()
        err = proc.communicate(timeout=30)[1]
    warnings = [l for l in err.splitlines() if "not used by anemone (they change no answer)" in l]
    assert len(warnings) == 1 and [f for f in TRITON_IGNORED if f not in warnings[0]] == [], err
    # 14 since session 55 (the two header forward patterns work now): fewer means the list's text moved.
    assert len(TRITON_IGNORED) >= 14 and re.search(r"WARN.*Vertex AI", err), err


def test_any_other_triton_flag_is_refused_by_name():
    """FROM_TRITON.md: the flags another anemone flag replaces ("clap refuses the flag as unknown"),
    and "Any other of Triton's flags is refused by name (`unexpected argument`)", status 2."""
    others = [f for f in TRITON_FLAGS if not has_flag(help_of("serve"), f) and f not in TRITON_IGNORED]
    assert len(TRITON_REPLACED) == 2 and set(TRITON_REPLACED) <= set(others) and "--vertex-ai-port" in others
    bad = [(f, p.returncode, p.stderr[:99]) for f in others
           for p in [anemone("serve", "--model-repository", "x", f, "1")]
           if p.returncode != 2 or f"unexpected argument '{f}'" not in p.stderr]
    assert not bad, bad


@pytest.mark.parametrize("flags,words", [
    (["--allow-sagemaker", "true"], "anemone has no SageMaker endpoint"),
    (["--allow-vertex-ai", "true"], "anemone has no Vertex AI endpoint"),
    (["--model-namespacing", "true"], "a model name is one model across all repositories"),
    (["--metrics-config", "histogram_latencies=true"], "anemone_inference_request_duration_seconds"),
    (["--backend-config", "onnxruntime,foo=1"], "'onnxruntime,foo=1'"),
], ids=["sagemaker", "vertex-ai", "namespacing", "triton-histograms", "backend-config"])
def test_tritons_values_anemone_refuses_are_refused_with_the_documented_reason(flags, words):
    """FROM_TRITON.md's table: `true` is refused for --allow-sagemaker / --allow-vertex-ai ("anemone
    has neither endpoint") and --model-namespacing ("a model name is one model across all
    repositories"); "Triton's histograms are refused (anemone has its own,
    `anemone_inference_request_duration_seconds`)"; another --backend-config setting "stops
    start-up naming it". Status 2 (CONFIGURATION.md: any flag mistake)."""
    p = anemone("serve", "--model-repository", "x", "--http-port", "0", "--grpc-port", "0", *flags)
    assert p.returncode == 2 and words in p.stderr, (p.returncode, p.stderr)


@pytest.mark.parametrize("flags", [
    ["--eviction", "lru"], ["--backends", "auto", "--strict"], ["--backends", "tract-cpu,tract-cpu"],
    ["--allow-http", "false", "--allow-grpc", "false"],
    ["--cache-config", "local,size=1MiB", "--response-cache-byte-size", "9"],
    ["--grpc-server-cert", "/etc/hostname"],
], ids=["eviction-without-budget", "auto-and-strict", "backend-twice", "no-listener", "two-caches", "cert-without-ssl"])
def test_flags_that_do_not_go_together_exit_2(tmp_path, flags):
    """CONFIGURATION.md:72: "The exit status is 2, as for any flag mistake, flags that do not go
    together included (`--eviction lru` without `--memory-budget`, `--backends auto` with
    `--strict`, a backend named twice)". FROM_TRITON.md: both --allow-http and --allow-grpc false
    "is refused"; --response-cache-byte-size: "one or the other"; SECURITY.md: a gRPC certificate
    needs --grpc-use-ssl. Each is refused before serving, saying why; the status must be 2."""
    (tmp_path / "repo").mkdir()
    p = anemone("serve", "--model-repository", tmp_path / "repo", "--http-port", "0", "--grpc-port", "0", *flags,
                timeout=30)
    assert p.returncode != 0 and p.stderr.startswith("error: ") and "listening" not in p.stdout, p.stderr
    assert p.returncode == 2, (p.returncode, p.stderr)


def test_config_show_takes_the_triton_command_line_serve_takes():
    """CONFIGURATION.md:98: `config show` "layers the flags given after `--` (the same flags `serve`
    takes) ... exactly as `serve` would"; serve takes --pinned-memory-pool-byte-size (above)."""
    assert config_show(["--model-repository", "x", "--pinned-memory-pool-byte-size", "0"])["model-repository"]


def test_config_show_prints_what_configuration_md_shows(tmp_path):
    """CONFIGURATION.md: the example file `anemone.toml`, `ANEMONE_MAX_CONCURRENCY=32` and `anemone
    config show -- --config anemone.toml --http-port 9000` print the rows shown (an excerpt, in
    order; columns compared word by word)."""
    doc = ROOT / "docs/CONFIGURATION.md"
    toml = next(l for _, l in blocks(doc) if l[0][1] == "# anemone.toml")
    shown = next(l for _, l in blocks(doc) if l[0][1].startswith("SETTING"))
    (tmp_path / "anemone.toml").write_text("\n".join(t for _, t in toml) + "\n")
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("ANEMONE_")}, "ANEMONE_MAX_CONCURRENCY": "32"}
    out = subprocess.run([str(BIN), "config", "show", "--", "--config", "anemone.toml", "--http-port", "9000"],
                         cwd=tmp_path,
                         capture_output=True, text=True, env=full).stdout.splitlines()
    rows, at, missing = [l.split() for l in out], 0, []
    for want in [t.split() for _, t in shown if t.strip() != "..."]:
        if want in rows[at:]:
            at += rows[at:].index(want) + 1
        else:
            missing.append(want)
    assert len(rows) > 50 and missing == [], (missing, out)


# ------------------------------------------------------------------ 2. environment variables

def doc_env_names():
    names = {}
    for doc in DOCS:
        for n, line in enumerate(text(doc).splitlines(), 1):
            for m in re.finditer(r"\bANEMONE_[A-Z0-9_]*[A-Z0-9]\b(_\*)?", line):
                names.setdefault(m.group(0), where(doc, n))
    return names


def help_envs(sub):
    return re.findall(r"\n\s+(?:-\w, )?(--[a-z][\w-]*)[^\n]*\n(?:(?!\n\s+(?:-\w, )?--)[\s\S])*?\[env: (\w+)",
                      help_of(sub))


def test_every_anemone_variable_the_docs_name_is_read_by_the_binary_or_its_script():
    """Each ANEMONE_* of README.md and docs/*.md is in the binary (--help or its strings), or, for
    scripts' and tests' variables and the `cuda` feature's tract-cuda switches (not in this CPU
    build), in the tracked source that reads it. `ANEMONE_GATE_*` names a family of --help's."""
    files = subprocess.run(["git", "ls-files", "crates", "scripts", "tests", "fuzz"], cwd=ROOT, capture_output=True,
                           text=True).stdout.split()
    sources = "\n".join((ROOT / f).read_text(errors="replace") for f in files if not f.endswith(".md")
                        and (ROOT / f).is_file() and (ROOT / f).stat().st_size < 2_000_000)
    helps, binary = "".join(help_of(s) for s in SUBS), BIN.read_bytes()
    names = doc_env_names()
    bad = [(at, n) for n, at in sorted(names.items())
           if not (re.search(re.escape(n[:-1]) + "[A-Z]", helps) if n.endswith("_*") else
                   has_flag(helps, n) or n.encode() in binary or re.search(re.escape(n) + r"\b", sources))]
    assert len(names) > 60 and not bad, bad


def test_every_variable_in_help_is_documented_by_name_or_by_the_documented_rule():
    """Each `[env: ...]` of serve's --help is named in the docs, or is ANEMONE_<FLAG> (CONFIGURATION.md:7)
    for a flag or key the docs name; every one of serve's follows that rule but ANEMONE_LOG, which
    CONFIGURATION.md's table names. The other subcommands' variables are documented by README.md:163,
    "Every flag also reads an `ANEMONE_*` environment variable; `anemone <command> --help` lists
    them": every option of every subcommand has one."""
    named, everything = doc_env_names(), "".join(text(d) for d in DOCS)
    bad = [(sub, flag) for sub in SUBS for flag in re.findall(r"\n\s+(?:-\w, )?(--[a-z][\w-]*)", help_of(sub))
           if flag not in ("--help", "--version") and flag not in dict(help_envs(sub))]
    for flag, env in help_envs("serve"):
        rule = "ANEMONE_" + flag[2:].upper().replace("-", "_")
        if env != rule and (flag, env) != ("--log-level", "ANEMONE_LOG"):
            bad.append((flag, env, "not ANEMONE_<FLAG>"))
        if not (env in named or any(n.endswith("_*") and env.startswith(n[:-1]) for n in named)
                or env == rule and re.search(rf"`(--)?{flag[2:]}(?![\w-])", everything)):
            bad.append((flag, env, "not documented"))
    assert not bad, bad


def test_every_serve_variable_is_read_by_serves_layering(tmp_path):
    """CONFIGURATION.md: "the environment, ANEMONE_<FLAG>"; a refused value "is reported where it came
    from ... an environment variable by name". Each of serve's variables set to a value no flag
    takes is named in the refusal, or shown by `config show` as coming from `env` (flags taking
    any text). ANEMONE_LOG: its own test below."""
    pairs = help_envs("serve")
    bad = []
    for flag, env in pairs:
        if env in ("ANEMONE_LOG", "ANEMONE_MODEL_REPOSITORY"):
            continue
        p = anemone("config", "show", "--json", "--", "--model-repository", "x", env={env: "@@bad@@"}, cwd=tmp_path)
        if p.returncode == 0:
            source = {s["key"]: s["source"] for s in json.loads(p.stdout)["settings"]}.get(flag[2:])
            bad += [] if source == "env" else [(env, source)]
        elif env not in p.stderr:
            bad.append((env, p.returncode, p.stderr[:150]))
    p = anemone("config", "show", "--json", env={"ANEMONE_MODEL_REPOSITORY": "/srv/models"})
    assert {s["key"]: s["source"] for s in json.loads(p.stdout)["settings"]}["model-repository"] == "env"
    assert len(pairs) > 90 and not bad, bad


@pytest.mark.parametrize("how", [
    "env", "file", "flag",
])
def test_a_bad_log_level_is_reported_where_it_came_from_with_status_2(tmp_path, how):
    """CONFIGURATION.md:41-45: "A value the flag's parser refuses is reported where it came from, and
    the server does not start (exit status 2): a file's key with its line number, an environment
    variable by name (`environment variable ANEMONE_HTTP_PORT="abc": ...; fix or unset it`), a
    flag with clap's usual message." ANEMONE_LOG_FORMAT=xml is reported so; the log level is not."""
    (tmp_path / "repo").mkdir()
    (tmp_path / "a.toml").write_text('http-port = 0\nlog-level = "@@bad@@"\n')
    args = ["serve", "--model-repository", tmp_path / "repo", "--http-port", "0", "--grpc-port", "0"]
    control = anemone(*args, env={"ANEMONE_LOG_FORMAT": "xml"})
    assert control.returncode == 2 and 'environment variable ANEMONE_LOG_FORMAT="xml"' in control.stderr
    env, more, words = {
        "env": ({"ANEMONE_LOG": "@@bad@@"}, [], 'environment variable ANEMONE_LOG="@@bad@@"'),
        "file": ({}, ["--config", tmp_path / "a.toml"], "line 2, key 'log-level'"),
        "flag": ({}, ["--log-level", "@@bad@@"], "invalid value '@@bad@@' for '--log-level")}[how]
    p = anemone(*args, *more, env=env)
    assert p.returncode == 2 and words in p.stderr, (p.returncode, p.stderr)


@pytest.mark.parametrize("env,words,status", [
    ({"ANEMONE_MAX_MODEL_FILE_BYTES": "100"}, "more than the 100-byte limit on a model file", 1),
    ({"ANEMONE_PYTHON_INIT_TIMEOUT_S": "-1"}, 'ANEMONE_PYTHON_INIT_TIMEOUT_S="-1" is not a positive number', 0),
    ({"ANEMONE_PYTHON_SENDER_WAIT_S": "soon"}, 'ANEMONE_PYTHON_SENDER_WAIT_S="soon" is not a number', 0),
    ({"ANEMONE_PYTHON": "/nonexistent/python3"}, "/nonexistent/python3", 1),
], ids=["max-model-file-bytes", "python-init-timeout", "python-sender-wait", "python"])
def test_the_other_variables_act_as_configuration_md_says(tmp_path, env, words, status):
    """CONFIGURATION.md "Other environment variables", through `anemone models` on the README's `add`
    and Triton's `add_sub`: ANEMONE_MAX_MODEL_FILE_BYTES bounds a model file (SERVING.md:179); a bad
    Python timeout is "named in a warning" (SERVING.md:764, :945); ANEMONE_PYTHON is the interpreter.
    (ANEMONE_CACHE_DIR is Core ML's, macOS only: its name is in the binary, test above.)"""
    shutil.copytree(ROOT / "examples/models/add", tmp_path / "repo/add")
    shutil.copytree(ROOT / "examples/python_models/add_sub", tmp_path / "repo/add_sub")
    p = anemone("models", "--model-repository", tmp_path / "repo", env={"ANEMONE_PYTHON": sys.executable, **env},
                timeout=120)
    assert words in p.stdout + p.stderr and p.returncode == status, (p.returncode, p.stdout, p.stderr)


# ------------------------------------------------------------------ servers: the examples, with traffic

def onnx_file(path, nodes, inputs, outputs, inits=()):
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info(*i) for i in inputs],
                         [h.make_tensor_value_info(*o) for o in outputs], list(inits))
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)


class Served:
    """A server from start_serve, its Metrics address and the rest of its stdout (the table)."""

    def __init__(self, proc, addresses):
        self.proc, self.http, self.grpc = proc, addresses["HTTP"], addresses["gRPC"]
        self.started = time.monotonic()
        self.out = [proc.stdout.readline()]
        self.metrics_at = self.out[0].partition(" listening on ")[2].strip()
        threading.Thread(target=lambda: self.out.extend(iter(proc.stdout.readline, "")), daemon=True).start()

    def metrics(self):
        return requests.get(f"http://{self.http}/metrics", timeout=30).text

    def post(self, path, body):
        return requests.post(f"http://{self.http}{path}", json=body, timeout=60)


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """A copy of examples/python_models, served as README.md and SERVING.md serve it, with the three
    models of fixtures/artifacts_match/models for the metrics (`addb`: batched and cached, `seq`: a
    sequence model, `alloc`: engine faults that move it to tract). A response cache, Triton's
    metric names and summaries on."""
    repo = tmp_path_factory.mktemp("examples") / "repo"
    shutil.copytree(ROOT / "examples/python_models", repo, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(HERE / "models", repo, dirs_exist_ok=True)
    shutil.copytree(ROOT / "examples/models/add/1", repo / "addb/1")
    onnx_file(repo / "alloc/1/model.onnx", [
        h.make_node("Unsqueeze", ["n", "ax"], ["s"]),
        h.make_node("ConstantOfShape", ["s"], ["c"], value=h.make_tensor("v", T.FLOAT, [1], [1.0])),
        h.make_node("ReduceSum", ["c"], ["r"], keepdims=0), h.make_node("Mul", ["x", "r"], ["y"])],
        [("n", T.INT64, []), ("x", T.FLOAT, ["N"])], [("y", T.FLOAT, ["N"])], [h.make_tensor("ax", T.INT64, [1], [0])])
    proc, addresses = start_serve(repo, "--cache-config", "local,size=1MiB", "--triton-metrics", "true",
                                  "--metrics-config", "summary_latencies=true", "--memory-budget", "4GiB")
    served = Served(proc, addresses)
    wait_ready(served.http, 180)
    served.models = sorted(p.name for p in repo.iterdir())
    yield served
    stop_serve(proc)


def fp32(name, data):
    a = np.asarray(data, np.float32)
    return {"name": name, "shape": list(a.shape), "datatype": "FP32", "data": a.ravel().tolist()}


@pytest.fixture(scope="module")
def evicting(tmp_path_factory):
    """EVICTION.md "Try it": its mkdir/cp lines (/tmp/evict in a temporary folder), serve with its
    `anemone serve` line's flags, and a request for the model it evicted (`transformer`)."""
    tmp = tmp_path_factory.mktemp("evict")
    setup = next(l for _, l in blocks(ROOT / "docs/EVICTION.md") if any("/tmp/evict" in t for _, t in l))
    for _, line in setup:
        if line.startswith(("mkdir", "cp")):
            subprocess.run(line.replace("/tmp/evict", str(tmp / "evict")), shell=True, cwd=ROOT, check=True)
    flags = shlex.split(next(t for _, t in setup if "anemone serve" in t).split("anemone serve", 1)[1])
    proc, addresses = start_serve(tmp / "evict", *flags[flags.index("--model-repository") + 2:])
    served = Served(proc, addresses)
    wait_ready(served.http)
    x = np.full((1, 5, 32), 0.5, np.float32)  # the document's request
    answer = served.post("/v2/models/transformer/infer", {"inputs": [fp32("x", x)]})
    assert answer.status_code == 200, answer.text
    want = ort.InferenceSession(str(tmp / "evict/transformer/1/model.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(np.reshape(answer.json()["outputs"][0]["data"], want.shape), want, rtol=1e-4, atol=1e-5)
    yield served
    stop_serve(proc)


def samples(text_):
    return [(s.name, s.labels, s.value) for fam in text_string_to_metric_families(text_) for s in fam.samples]


@pytest.fixture(scope="module")
def trafficked(examples, evicting):
    """Traffic of each kind on the examples server: a dynamic batch of three on `addb`, a repeated
    request answered from the cache, the custom metric of `text_stats`, a failure (an empty text:
    400), a sequence on `seq`, five engine faults moving `alloc` to tract, a request refused at the
    global limit (max-concurrency 1 through the run-time API while a stream holds the permit).
    Returns (family types, samples) of both servers' /metrics."""
    s, x = examples, np.arange(12, dtype=np.float32).reshape(3, 4)
    threads = [threading.Thread(target=s.post, args=("/v2/models/addb/infer", {"inputs": [fp32("x", [x[i]]),
                                                                                          fp32("y", [x[i] * 2])]}))
               for i in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for _ in range(2):
        assert s.post("/v2/models/addb/infer", {"inputs": [fp32("x", [x[0]]), fp32("y", [x[0]])]}).status_code == 200
    text_in = {"name": "TEXT", "datatype": "BYTES", "shape": [1, 1]}
    assert s.post("/v2/models/text_stats/infer", {"inputs": [dict(text_in, data=["abc"])]}).status_code == 200
    assert s.post("/v2/models/text_stats/infer", {"inputs": [dict(text_in, data=[""])]}).status_code == 400
    seq = {"name": "INPUT", "datatype": "INT32", "shape": [1]}
    for params, v in [({"sequence_id": 7, "sequence_start": True}, 3), ({"sequence_id": 7, "sequence_end": True}, 4)]:
        answer = s.post("/v2/models/seq/infer", {"parameters": params, "inputs": [dict(seq, data=[v])]})
        assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [3 if v == 3 else 7], answer.text
    n = {"name": "n", "shape": [], "datatype": "INT64", "data": [10 ** 12]}
    for _ in range(5):
        assert s.post("/v2/models/alloc/infer", {"inputs": [n, fp32("x", [1.0])]}).status_code >= 500
    deadline = time.time() + 30
    while "anemone_backend_fallbacks_total{" not in s.metrics() and time.time() < deadline:
        time.sleep(0.2)
    assert s.post("/v2/anemone/config", {"max-concurrency": 1}).status_code == 200
    try:
        holder = threading.Thread(target=s.post, args=("/v2/models/repeat/generate_stream",
                                                       {"IN": [1, 2, 3], "delay_ms": 500}))
        holder.start()
        time.sleep(0.4)
        refused = s.post("/v2/models/addb/infer", {"inputs": [fp32("x", [x[1]]), fp32("y", [x[2]])]})
        holder.join()
    finally:
        assert s.post("/v2/anemone/config", {"max-concurrency": 256}).status_code == 200
    assert refused.status_code == 429, refused.text
    texts = [s.metrics(), evicting.metrics()]
    return ({k: v for t in texts for k, v in re.findall(r"^# TYPE (\S+) (\S+)", t, re.M)},
            [x for t in texts for x in samples(t)])


def labels_of(traffic, name):
    return set().union(*[set(l) for n, l, _ in traffic[1] if n == name])


def has_family(types, name):
    return name in types or types.get(re.sub(r"_(bucket|sum|count)$", "", name)) in ("histogram", "summary")


# ------------------------------------------------------------------ 3. metrics

NO_GPU = shutil.which("nvidia-smi") is None
GPU_RE = re.compile(r"^(anemone_gpu_|nv_gpu_|nv_energy_)")
CRATES = {"anemone_core", "anemone_runtime", "anemone_backends", "anemone_server", "anemone_cli", "anemone_io"}
_OBS = text(ROOT / "docs/OBSERVABILITY.md")
RENAMED = re.findall(r"^\| `(anemone_\w+)`[^|]*\| `(anemone_\w+)`", _OBS, re.M)
ADAPTER = yaml.safe_load(next("\n".join(t for _, t in l) for _, l in blocks(ROOT / "docs/DEPLOY.md")
                              if any("seriesQuery" in t for _, t in l)))["rules"][0]
# Names the documents say are not on /metrics: the renamed ones ("no alias is kept"), Triton's pinned
# memory gauges (OBSERVABILITY.md:402 "are not written"), the success duration's name it is "not"
# (OBSERVABILITY.md:515) and the Prometheus Adapter's own name (DEPLOY.md's rule).
ABSENT = {old for old, _ in RENAMED} | set(re.findall(r"`(nv_pinned_\w+)`", _OBS)) | \
    {ADAPTER["name"]["as"], "anemone_inference_request_duration_seconds_total"}
METRIC_DOCS = ["OBSERVABILITY.md", "SERVING.md", "PERFORMANCE.md", "the others"]


def doc_metric_names(doc):
    def expand(name):
        m = re.search(r"_\{([a-z_,]+)\}", name)
        return [name] if not m else [x for alt in m.group(1).split(",")
                                     for x in expand(name[:m.start() + 1] + alt + name[m.end():])]
    for n, line in enumerate(text(doc).splitlines(), 1):
        for m in re.finditer(r"(?<![\w/:])((?:anemone|nv)_[a-z0-9_]*(?:_\{[a-z_,]+\}[a-z0-9_]*)*)(?![\w(:])", line):
            yield from ((n, x) for x in expand(m.group(1)) if not x.endswith("_") and x not in CRATES)


@pytest.mark.parametrize("which", METRIC_DOCS)
def test_every_metric_the_documents_name_exists_after_traffic_of_each_kind(trafficked, which):
    """Each `anemone_*` / `nv_*` name of the documents is a family (or a histogram's or summary's
    series) on /metrics of the servers above; the names the documents say are not there (ABSENT)
    are not, nor, on a machine without NVIDIA's driver, the GPU families (SERVING.md:1683 "a
    machine without the driver has none")."""
    docs = [d for d in DOCS if d.name == which or which == "the others" and d.name not in METRIC_DOCS]
    types, bad = trafficked[0], []
    for doc in docs:
        for line, name in doc_metric_names(doc):
            if name in ABSENT or (NO_GPU and GPU_RE.match(name)):
                bad += [(where(doc, line), name, "documented absent")] if name in types else []
            elif not has_family(types, name):
                bad.append((where(doc, line), name, "not on /metrics"))
    assert not bad, bad


def test_the_documented_label_sets_and_buckets_are_the_series(trafficked):
    """Every `name{a,b,...}` of the documents: each series of the family carries those labels
    (exactly those when two or more are listed); `name{k="v"}`: the family has label k. And
    SERVING.md: `anemone_inference_batch_size` has "buckets 1, 2, 4, …, 128"; OBSERVABILITY.md's
    renames: each old name is gone and its new name there."""
    bad, unseen = [], []
    for doc in DOCS:
        for n, line in enumerate(text(doc).splitlines(), 1):
            for name, inside in re.findall(r"\b((?:anemone|nv)_[a-z0-9_]+)\{([^}]*)\}", line):
                if name.endswith("_") or "!=" in inside or (NO_GPU and GPU_RE.match(name)):
                    continue
                keys, got = set(re.findall(r"(\w+)(?:=\"[^\"]*\")?", inside)), labels_of(trafficked, name)
                if not got:
                    unseen.append((where(doc, n), name))
                elif not keys <= got or "=" not in inside and len(keys) > 1 and keys != got - {"le", "quantile"}:
                    bad.append((where(doc, n), name, sorted(keys), sorted(got)))
    assert not bad and all(name in trafficked[0] for _, name in unseen), (bad, unseen)
    les = {float(l["le"]) for n, l, _ in trafficked[1] if n == "anemone_inference_batch_size_bucket"}
    assert les == {2.0 ** i for i in range(8)} | {float("inf")}, les
    assert len(RENAMED) >= 15 and [(o, n) for o, n in RENAMED if o in trafficked[0] or n not in trafficked[0]] == []


DASHBOARD = json.loads((ROOT / "examples/grafana/anemone-dashboard.json").read_text())
PANELS = [p for p in DASHBOARD["panels"] if p.get("targets")]
# OBSERVABILITY.md's H200 sample lines: the GPU families' labels, where no driver is here.
DOC_GPU_LABELS = {m.group(1): set(re.findall(r"(\w+)=", m.group(2)))
                  for m in re.finditer(r"^\s*((?:anemone_gpu|nv_gpu|nv_energy)\w*)\{([^}]*)\}", _OBS, re.M)}


def labels_for(trafficked, name):
    got = labels_of(trafficked, name)
    return got or (DOC_GPU_LABELS.get(name, set()) if NO_GPU and GPU_RE.match(name) else set())


@pytest.mark.parametrize("panel", PANELS, ids=[p["title"] for p in PANELS])
def test_each_dashboard_query_names_metrics_and_labels_that_exist(trafficked, panel):
    """examples/grafana/anemone-dashboard.json, each target's PromQL: every metric is a family on
    /metrics after the traffic above (GPU families: none without NVIDIA's driver, as SERVING.md
    says; their labels then come from OBSERVABILITY.md's H200 lines); every label of a matcher, or
    of the `by (...)` around the metric, is one its series carry; every `{{label}}` of the legend
    is one the result keeps (the `by` labels, or those of every metric of a plain expression)."""
    types, bad = trafficked[0], []
    for target in panel["targets"]:
        expr = target["expr"]
        uses = []
        for m in re.finditer(r"\b((?:anemone|nv)_\w+)(\{[^}]*\})?", expr):
            need = set(re.findall(r"(\w+)\s*=~?", m.group(2) or ""))
            by = re.findall(r"by \(([^)]*)\)", expr[:m.start()])
            uses.append((m.group(1), need | ({l.strip() for l in by[-1].split(",")} if by else set())))
        assert uses, expr
        for name, need in uses:
            if not has_family(types, name) and not (NO_GPU and GPU_RE.match(name)):
                bad.append((name, "no such family"))
            elif need - labels_for(trafficked, name):
                bad.append((name, sorted(need - labels_for(trafficked, name))))
        by = [{l.strip() for l in b.split(",")} for b in re.findall(r"by \(([^)]*)\)", expr)]
        kept = set.union(*by) if by else set.intersection(*[labels_for(trafficked, n) for n, _ in uses])
        bad += [(target["legendFormat"], l) for l in re.findall(r"\{\{(\w+)\}\}", target.get("legendFormat", ""))
                if l not in kept]
    assert not bad, bad


def test_the_dashboards_model_variable_lists_every_loaded_model(trafficked, examples):
    """The dashboard's `$model` variable: `label_values(metric, label)` names a family whose series
    carry that label, one value per loaded model."""
    var = next(v for v in DASHBOARD["templating"]["list"] if v["name"] == "model")
    metric, label = re.match(r"label_values\((\w+), (\w+)\)", var["query"]).groups()
    assert set(examples.models) <= {l.get(label) for n, l, _ in trafficked[1] if n == metric}


# ------------------------------------------------------------------ 4. the examples and their answers

ROUTE = re.compile(r"(?<![/\w])localhost:800[02](/[^\s'\"]*)")


def runnable(cmd):
    m = ROUTE.search(cmd)
    return bool(re.search(r"(?<![/\w])\.venv/bin/python examples/clients/", cmd) or
                m and cmd.lstrip().startswith("curl") and "https://" not in cmd and
                re.fullmatch(r"/v2/models/\w+(/infer|/generate|/generate_stream)?|/metrics", m.group(1)))


def example_blocks():
    """Blocks run against examples/python_models: the nearest `serve --model-repository X` above them
    in their document serves examples/models or examples/python_models, and they hold a curl to a
    model's infer/generate/metadata route or /metrics, or an examples/clients script."""
    found = []
    for doc in DOCS:
        serving = None
        for start, lines in blocks(doc):
            for m in re.finditer(r"serve --model-repository (\S+)", "\n".join(t for _, t in lines)):
                serving = m.group(1)
            if serving in ("examples/models", "examples/python_models") and \
                    any(runnable(c) for _, c, _ in joined(lines)):
                found.append(pytest.param(doc, start, id=where(doc, start)))
    return found


def run_logged(cmd, served):
    """A documented command with the server's addresses for localhost:8000/8001/8002: [(s, line)]."""
    cmd = cmd.replace("localhost:8000", served.http).replace("localhost:8002", served.metrics_at)
    cmd = re.sub(r"(examples/clients/\S+\.py)", rf"\1 --url {served.grpc}",
                 cmd.replace(".venv/bin/python", shlex.quote(sys.executable)))
    t0, out = time.monotonic(), []
    proc = subprocess.Popen(["bash", "-c", cmd], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    out = [(time.monotonic() - t0, line.rstrip("\n")) for line in iter(proc.stdout.readline, "")]
    assert proc.wait(timeout=120) == 0 or "grep" in cmd, cmd
    return out


SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (-?[\d.e+-]+)$")


def mismatch(expected, got, before):
    """The output shown under a command against its output lines, in order: `...` elides text; a
    line of `...` (or `... prose`) elides lines; `  (note)` at the end is a note. A counter's or
    histogram's value is the document's on a fresh server plus its value before the block ran; a
    gauge's (a machine figure) is not compared."""
    lines, pos, gap = [l for l in got if l.strip()], 0, False
    for want in expected:
        want = re.sub(r"\s{2,}\(.*\)\s*$", "", want).strip()
        if not want or want.startswith("("):
            continue
        if re.fullmatch(r"\.\.\.[^{\[\"]*", want):
            gap = True
            continue
        sample, check = SAMPLE.match(want), None
        if sample:
            series, value = sample.groups()
            regex = re.escape(series) + r" (\S+)$"
            if re.search(r"_(total|count|sum|bucket)(\{|$)", series):
                check = float(value) + before.get(series, 0.0)
        else:
            regex = ".*?".join(map(re.escape, re.split(r"\s*\.\.\.\s*", want)))
            regex += "" if want.startswith("...") or want.endswith("...") else "$"
        while pos < len(lines):
            m, pos = re.match(regex, lines[pos]), pos + 1
            if m:
                if check is not None and float(m.group(1)) != check:
                    return f"{series} is {m.group(1)}: the document's {value} after {before.get(series, 0.0)}"
                break
            if not gap:
                return f"{want!r} is not {lines[pos - 1]!r}"
        else:
            return f"{want!r} not in {lines}"
        gap = False
    return None


def reference(model, x):
    """What numpy says each example model answers."""
    refs = {"add": lambda: {"sum": x["x"] + x["y"], "diff": x["x"] - x["y"]},
            "add_sub": lambda: {"OUTPUT0": x["INPUT0"] + x["INPUT1"], "OUTPUT1": x["INPUT0"] - x["INPUT1"]},
            "scale_then_add": lambda: {"SUM": x["X"] * 2 + x["Y"], "DIFF": x["X"] * 2 - x["Y"]},
            "add_twice": lambda: {"SUM": x["X"] + 2 * x["Y"]},
            "text_stats": lambda: {"UPPER": np.vectorize(str.upper, otypes=[object])(x["TEXT"]),
                                   "LENGTH": np.vectorize(len)(x["TEXT"])}}
    return refs[model]()


def check_answer(cmd, out, served):
    """The command's answer against numpy: the tensors of /infer (sent gzip-compressed when the
    command asks for it), the object of /generate, the events of /generate_stream (and their pace,
    where curl -N passes them on at once), the lines of examples/clients/repeat_stream.py."""
    lines = [l for _, l in out]
    if "repeat_stream.py" in cmd:
        values = [int(v) for v in re.findall(r"(?<=\s)-?\d+(?=\s|$)", cmd.split("repeat_stream.py", 1)[1])]
        assert lines == [f"IDX {i}: OUT {v}" for i, v in enumerate(values or [4, 8, 15, 16, 23, 42])] + ["final"]
        return
    route, body = ROUTE.search(cmd).group(1), re.search(r"-d\s+'(.*?)'", cmd, re.S)
    if route == "/metrics" or re.search(r">\s*/dev/null", cmd):
        return
    model = route.split("/")[3]
    if not body:
        assert json.loads(lines[0])["name"] == model
        return
    body = json.loads(body.group(1))
    if "Accept-Encoding: gzip" in cmd:
        raw = requests.post(f"http://{served.http}{route}", json=body, headers={"Accept-Encoding": "gzip"}, stream=True)
        assert raw.headers.get("Content-Encoding") == "gzip", raw.headers
    if route.endswith("/infer"):
        x = {i["name"]: np.array(i["data"], object if i["datatype"] == "BYTES" else np.float64).reshape(i["shape"])
             for i in body["inputs"]}
        got = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in json.loads("".join(lines))["outputs"]}
        for name, want in reference(model, x).items():
            assert got[name].tolist() == want.tolist(), (name, got[name], want)
    elif route.endswith("/generate"):
        want = reference(model, {k: np.array([[v]], object) for k, v in body.items() if k.isupper()})
        assert {k: json.loads(lines[0])[k] for k in want} == {k: v.item() for k, v in want.items()}, lines
    else:
        events = [(t, json.loads(l[len("data: "):])) for t, l in out if l.startswith("data: ")]
        if model == "countdown":
            # One answer a run, the request rescheduled between: n-1 down to 0.
            assert [e["OUT"] for _, e in events] == list(range(body["IN"] - 1, -1, -1)), events
            return
        if model == "repeat":
            assert [(e["IDX"], e["OUT"]) for _, e in events] == list(enumerate(body["IN"])), events
            pace = body.get("delay_ms", 100) / 1000
        else:
            assert [e["LETTER"] for _, e in events] == [c.upper() for c in body["TEXT"]], events
            pace = 0.1  # spell_each/config.pbtxt: "one response per code point, 100 ms apart"
        if re.search(r"curl -s?N", cmd):
            # Unbuffered: the events come over the stream's whole length, each
            # on its own. One gap may be short: a neighbour's load that delays
            # one event shortens the gap after it (44 ms, then 104, 159, 90 at
            # 100 ms apart beside three other test workers); events held and
            # sent in pairs shorten every other gap. A machine that stalls the
            # server or curl for a few hundred ms bunches them too (gaps of 2,
            # 8, 27 and 120 ms once, beside three test workers on two cores),
            # so the stream is read a second time before failing: a stream
            # that is held back bunches its events every time.
            def paced(events):
                gaps = np.sort(np.diff([t for t, _ in events]))
                return len(events) > 1 and gaps.sum() > 0.6 * pace * len(gaps) and \
                    (len(gaps) == 1 or gaps[1:].min() > 0.5 * pace)
            if not paced(events):
                again = [(t, json.loads(l[len("data: "):])) for t, l in run_logged(cmd, served)
                         if l.startswith("data: ")]
                assert paced(again), (events, again, pace)


def series_values(text_):
    return {n + ("{" + ",".join(f'{k}="{v}"' for k, v in l.items()) + "}" if l else ""): v
            for n, l, v in samples(text_)}


@pytest.mark.parametrize("doc,start", example_blocks())
def test_a_documented_example_block_answers_as_shown_and_as_numpy_says(examples, doc, start):
    """Each block of curl commands (and examples/clients scripts) the documents run against
    examples/python_models or examples/models, run as written with the server's addresses: the
    output shown under each command (`# ...` lines) is what it prints, and each answer is what
    numpy computes from the request the command sends."""
    block = next(l for s, l in blocks(doc) if s == start)
    # A block that waits after its `anemone serve` (`sleep 3`: the CPU figure of /metrics comes one
    # --metrics-interval-ms after the start) runs on a server up that long.
    waited = [float(w) for _, t in block for w in re.findall(r"^sleep (\d+(?:\.\d+)?)", t.strip())]
    time.sleep(max(0.0, max(waited, default=0.0) - (time.monotonic() - examples.started)))
    ran, before = 0, series_values(examples.metrics())
    for line, cmd, expected in joined(block):
        if runnable(cmd):
            out, ran = run_logged(cmd, examples), ran + 1
            assert mismatch(expected, [l for _, l in out], before) is None, \
                (where(doc, line), mismatch(expected, [l for _, l in out], before))
            check_answer(cmd, out, examples)
    assert ran


def test_the_classification_example_answers_as_serving_md_shows(tmp_path):
    """SERVING.md "Classification": the block's own repository (/tmp/cls in a temporary folder: the
    README's add, a label file, a config with `label_filename`), serve, and its curl: the shown
    answer, which is numpy's top 2 of x + y as `value:index:label`."""
    start, lines = next((s, l) for s, l in blocks(ROOT / "docs/SERVING.md") if any("/tmp/cls" in t for _, t in l))
    body = "\n".join(t for _, t in lines).replace("/tmp/cls", str(tmp_path / "cls"))
    setup, rest = body.split("\nanemone serve", 1)
    subprocess.run(["bash", "-c", setup], cwd=ROOT, check=True)
    proc, addresses = start_serve(tmp_path / "cls")
    try:
        wait_ready(addresses["HTTP"])
        served = type("S", (), {"http": addresses["HTTP"], "grpc": addresses["gRPC"], "metrics_at": ""})
        ((line, cmd, expected),) = [c for c in joined([(0, t) for t in rest.splitlines()[1:]]) if runnable(c[1])]
        out = [l for _, l in run_logged(cmd, served)]
    finally:
        stop_serve(proc)
    assert mismatch(expected, out, {}) is None, (mismatch(expected, out, {}), out)
    request = json.loads(re.search(r"-d\s+'(.*?)'", cmd, re.S).group(1))
    x, y = (np.array(i["data"], np.float32) for i in request["inputs"])
    labels = (tmp_path / "cls/add/labels.txt").read_text().splitlines()
    top = np.argsort(-(x + y), kind="stable")[:request["outputs"][0]["parameters"]["classification"]]
    assert json.loads(out[0])["outputs"][0]["data"] == [f"{(x + y)[i]:.6f}:{i}:{labels[i]}" for i in top]


def test_the_readme_tritonclient_snippet_prints_the_sum(examples):
    """README.md's Python block (tritonclient over gRPC on `add`), run as written with the server's
    gRPC address: it prints what its comment shows, which is numpy's x + y."""
    block = next(l for _, l in blocks(ROOT / "README.md") if any("tritonclient.grpc" in t for _, t in l))
    code = "\n".join(t for _, t in block).replace("localhost:8001", examples.grpc)
    shown = re.search(r"#\s*(\[\[.*\]\])\s*$", code, re.M).group(1)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == shown, out.stdout + out.stderr
    assert shown == str(np.array([[1, 2, 3, 4]], np.float32) + np.array([[10, 20, 30, 40]], np.float32))


def test_the_start_up_lines_are_the_ones_readme_shows(examples):
    """README.md "Two commands": the server "prints the addresses it listens on, then a table of its
    models once they have loaded": the Metrics line after HTTP and gRPC, the header shown, a row
    per model (version 1, READY)."""
    shown = next(l for _, l in blocks(ROOT / "README.md") if any("HTTP listening on" in t for _, t in l))
    rows = lambda: [l.split() for l in examples.out if l.split()[:1] and l.split()[0] in examples.models]
    deadline = time.time() + 30
    while len(rows()) < len(examples.models) and time.time() < deadline:
        time.sleep(0.1)
    assert examples.out[0].startswith("Metrics listening on ") and [t for _, t in shown][2].startswith("Metrics")
    assert [l.split() for l in examples.out if l.startswith("MODEL")] == [shown[3][1].split()]
    assert len(rows()) == len(examples.models) and all(r[1:3] == ["1", "READY"] for r in rows()), examples.out


def test_the_ocr_ensemble_example_runs_as_ensembles_md_says(tmp_path):
    """ENSEMBLES.md "The example: OCR text detection": make_repository.py, serve
    examples/ocr_ensemble/model_repository, client.py (in a copy of the folder: make_repository.py
    writes beside itself). The client checks the answer against ONNX Runtime running the three
    models in turn and prints the lines shown; the count shown is ONNX Runtime's (its reference)."""
    shown = [t for _, t in next(l for _, l in blocks(ROOT / "docs/ENSEMBLES.md") if any("pixels" in t for _, t in l))]
    folder = tmp_path / "ocr_ensemble"
    shutil.copytree(ROOT / "examples/ocr_ensemble", folder, ignore=shutil.ignore_patterns("__pycache__", "1"))
    made = subprocess.run([sys.executable, "make_repository.py"], cwd=folder, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    proc, addresses = start_serve(folder / "model_repository")
    try:
        wait_ready(addresses["HTTP"], 180)
        out = subprocess.run([sys.executable, "client.py", "--url", addresses["HTTP"], "--grpc", addresses["gRPC"]],
                             cwd=folder, capture_output=True, text=True, timeout=120)
    finally:
        stop_serve(proc)
    assert out.returncode == 0 and out.stdout.splitlines() == shown, (out.stdout, out.stderr, shown)
    assert re.search(r"HTTP: (\d+)", shown[0]).group(1) == re.search(r"ONNX Runtime: (\d+)", out.stdout).group(1)


# ------------------------------------------------------------------ 5. links and paths

def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped, spaces to `-`."""
    return re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")


@lru_cache(None)
def anchors(doc):
    seen, out = {}, set()
    for n, line in enumerate(text(doc).splitlines(), 1):
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m and n not in in_blocks(doc):
            s = slug(m.group(1))
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


def links(doc):
    for n, line in enumerate(text(doc).splitlines(), 1):
        for m in re.finditer(r"\]\(([^)\s]+)\)", line):
            if n not in in_blocks(doc) and not re.match(r"[a-z]+://|mailto:", m.group(1)):
                yield n, m.group(1)


def link_problem(doc, target):
    path, _, frag = target.partition("#")
    dest = (Path(doc).parent / path).resolve() if path else Path(doc)
    if not dest.exists():
        return "no such file"
    return f"no heading #{frag}" if frag and dest.suffix == ".md" and frag not in anchors(dest) else None


def test_every_relative_link_reaches_a_file_and_heading():
    """Each relative `[..](path#anchor)` of README.md and docs/*.md names a file of the repository and,
    in a Markdown file, a heading with that GitHub anchor (EVICTION.md:46: its own test below)."""
    found = [(doc, n, t) for doc in DOCS for n, t in links(doc)]
    bad = [(where(d, n), t, link_problem(d, t)) for d, n, t in found if t != BROKEN_LINK and link_problem(d, t)]
    assert len(found) > 150 and not bad, bad


BROKEN_LINK = "PERFORMANCE.md#on-demand-loading-under-eviction-lru"


def test_eviction_md_links_the_on_demand_loading_figures():
    """docs/EVICTION.md:46 points to PERFORMANCE.md's "On-demand loading under `--eviction lru`"."""
    doc = ROOT / "docs/EVICTION.md"
    targets = [t for _, t in links(doc) if t.startswith("PERFORMANCE.md#")]
    assert targets and [(t, link_problem(doc, t)) for t in targets if link_problem(doc, t)] == []


def path_exists(p):
    if (ROOT / p).exists() or (ROOT / "crates/anemone-server" / p).exists():
        return True
    folder = (ROOT / p).parent  # `fuzz/corpus/npy/crash-fa3db088…`: a prefix
    return p.endswith("…") and folder.is_dir() and any(c.name.startswith(Path(p).name[:-1]) for c in folder.iterdir())


def test_every_repository_path_the_docs_name_exists():
    """Each `scripts/...`, `tests/...`, `crates/...`, `examples/...`, `deploy/...`, `fixtures/...`,
    `fuzz/...` path of the documents exists (`tests/api/...` is crates/anemone-server's; a name
    ending in `…` is a prefix; globs, Triton's `docs/examples/...` and the fuzzing scripts' output
    folders are left out; BACKENDS.md:549: its own test below)."""
    found, skip = [], ("docs/examples/", "fuzz/artifacts", "fuzz/target", "fuzz/work", "scripts/requirements")
    for doc in DOCS:
        for n, line in enumerate(text(doc).splitlines(), 1):
            for m in re.finditer(r"(?<![\w./-])((?:scripts|tests|crates|examples|deploy|docs|fixtures|proto|fuzz)/"
                                 r"[\w./+-]*[\w/])(…?)", line):
                p = m.group(1).rstrip(".") + m.group(2)
                if not re.search(r"[*<]", line[m.start():m.end() + 1]) and not p.startswith(skip):
                    found.append((where(doc, n), p))
    bad = [(at, p) for at, p in found if p != STALE_PATH and not path_exists(p)]
    assert len(found) > 300 and not bad, bad


STALE_PATH = "crates/anemone-cli/tests/cli.rs"


def test_backends_md_names_the_file_of_its_onnxruntime_library_test():
    """docs/BACKENDS.md:549: "(`crates/anemone-cli/tests/cli.rs`, `bad_onnxruntime_libraries_...`)"."""
    line = next(l for l in text(ROOT / "docs/BACKENDS.md").splitlines() if "`bad_onnxruntime_libraries_...`" in l)
    path = ROOT / re.search(r"`(crates/[\w/.-]+)`", line).group(1)
    assert path.is_file() and "fn bad_onnxruntime_libraries_" in path.read_text()


# ------------------------------------------------------------------ 6. docs/DEPLOY.md's manifests

def manifests(path):
    return [d for d in yaml.safe_load_all((ROOT / path).read_text()) if d]


def test_the_prometheus_adapter_rule_reads_a_gauge_anemone_writes_and_feeds_the_hpa(trafficked):
    """DEPLOY.md "Kubernetes without KServe": the adapter rule's seriesQuery names a gauge per model
    and version (`namespace` and `pod` are Prometheus's target labels, not anemone's); its
    `name.as` is the metric deploy/k8s/hpa.yaml scales on, with "The target is 4 in flight per
    pod", on deploy/k8s's Deployment."""
    series = re.match(r"(\w+)\{", ADAPTER["seriesQuery"]).group(1)
    assert trafficked[0].get(series) == "gauge" and labels_of(trafficked, series) == {"model", "version"}
    (hpa,), (deployment,) = manifests("deploy/k8s/hpa.yaml"), manifests("deploy/k8s/deployment.yaml")
    metric = hpa["spec"]["metrics"][0]["pods"]
    assert metric["metric"]["name"] == ADAPTER["name"]["as"]
    assert metric["target"]["averageValue"] == re.search(r"The target is (\d+) in flight per pod",
                                                         text(ROOT / "docs/DEPLOY.md")).group(1)
    assert (hpa["spec"]["scaleTargetRef"]["kind"], hpa["spec"]["scaleTargetRef"]["name"]) == \
        (deployment["kind"], deployment["metadata"]["name"])


def test_the_k8s_deployment_and_service_are_what_deploy_md_says(examples):
    """DEPLOY.md: the Deployment reads S3 ("poll mode every 30 s, the cache on an `emptyDir`"), the
    Service has "HTTP 8000, gRPC 8001" on the container's ports, the prometheus.io annotations
    point at the port and path serving /metrics (the HTTP port), and
    `terminationGracePeriodSeconds` is the page's (40). Args are read by `config show`."""
    (deployment,), (service,) = manifests("deploy/k8s/deployment.yaml"), manifests("deploy/k8s/service.yaml")
    pod = deployment["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    got = config_show(c["args"], {e["name"]: e["value"] for e in c["env"] if "value" in e})
    assert got["model-repository"][0].startswith("s3://") and got["model-control-mode"] == "poll"
    assert str(got["repository-poll-secs"]) == "30"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert got["model-cache-dir"] in [mounts[v["name"]] for v in pod["spec"]["volumes"] if "emptyDir" in v]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": int(got["http-port"]), "grpc": int(got["grpc-port"])} == {"http": 8000, "grpc": 8001}
    assert {(p["port"], ports[p["targetPort"]]) for p in service["spec"]["ports"]} == {(8000, 8000), (8001, 8001)}
    notes = pod["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true" and int(notes["prometheus.io/port"]) == ports["http"]
    assert requests.get(f"http://{examples.http}{notes['prometheus.io/path']}").text.startswith("# HELP")
    grace = re.search(r"`terminationGracePeriodSeconds` \((\d+)\)", text(ROOT / "docs/DEPLOY.md")).group(1)
    assert pod["spec"]["terminationGracePeriodSeconds"] == int(grace)


def test_the_kserve_runtime_and_inference_service_are_what_deploy_md_says():
    """DEPLOY.md "KServe": a ClusterServingRuntime (`kserve-anemone`) with the `onnx` format
    (auto-selected), the `v2` and `grpc-v2` protocols, "HTTP on 8080 as its one declared port"
    (anemone's --http-port, where Prometheus reads), "gRPC listens on 8081 inside the pod",
    /mnt/models as the repository; the InferenceService runs on it, raw deployment mode, with the
    page's `storageUri`."""
    (runtime,), page = manifests("deploy/kserve/servingruntime.yaml"), text(ROOT / "docs/DEPLOY.md")
    spec = runtime["spec"]
    assert runtime["kind"] == "ClusterServingRuntime" and f"(`{runtime['metadata']['name']}`)" in page
    assert [(f["name"], f["autoSelect"]) for f in spec["supportedModelFormats"]] == [("onnx", True)]
    assert spec["protocolVersions"] == ["v2", "grpc-v2"]
    (c,) = spec["containers"]
    got = config_show(c["args"])
    assert [p["containerPort"] for p in c["ports"]] == [int(got["http-port"])] == [8080]
    assert int(got["grpc-port"]) == 8081 and got["model-repository"] == ["/mnt/models"]
    assert int(spec["annotations"]["prometheus.kserve.io/port"]) == 8080
    service = next(d for d in manifests("deploy/kserve/inferenceservice.yaml") if d["kind"] == "InferenceService")
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"] and model["modelFormat"]["name"] == "onnx"
    assert f"`storageUri: {model['storageUri']}`" in page
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"


def test_validate_manifests_and_the_nginx_script_are_what_deploy_md_says():
    """DEPLOY.md "Validation": `.venv/bin/python scripts/validate_manifests.py` checks every file
    under deploy/ offline and passes the committed ones. "Replicas behind nginx":
    scripts/nginx_rolling.py takes `--binary` and runs "3 replicas of `anemone serve` over
    `examples/models` (1 engine thread and 1 worker each), 8 client threads" (its serve command
    line read by `config show`)."""
    pytest.importorskip("kubernetes_validate")
    p = subprocess.run([sys.executable, "scripts/validate_manifests.py"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0 and all(str(f) in p.stdout + p.stderr for f in (ROOT / "deploy").rglob("*.yaml")), \
        p.stdout + p.stderr
    source = (ROOT / "scripts/nginx_rolling.py").read_text()
    assert '"--replicas", type=int, default=3' in source and '"--clients", type=int, default=8' in source
    assert '"--binary"' in source and "examples/models" in source
    call = re.search(r'\[self\.binary, "serve", (.*?)\]', source, re.S).group(1)
    got = config_show([a or "1" for a in re.findall(r'"([^"]*)"|str\([^)]*\)', call)])
    assert str(got["threads"]) == "1" and str(got["workers"]) == "1"
