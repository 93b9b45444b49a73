"""`peng4nn submit | jobs | watch | cancel` against the real service (and a real worker where a job must run)."""

from __future__ import annotations

import json
import re

import pytest

from peng4nn.cli import main
from tests.conftest import TINY_CNN

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def arch(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY_CNN, indent=2))
    return str(path)


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_submit_list_and_cancel(api, arch, capsys):
    url = api().url
    code, out, _ = cli(capsys, "submit", arch, "--url", url, "--label", "first", "--estimator", '{"e_max": 2}')
    assert code == 0
    job_id = out.split()[0]
    assert f"{job_id}  queued  {arch}" in out

    code, out, _ = cli(capsys, "jobs", "--url", url)
    assert code == 0 and job_id in out and "queued" in out and "first" in out and "1 of 1 job(s)" in out
    code, out, _ = cli(capsys, "jobs", "--url", url, "--json", "--status", "queued")
    listed = json.loads(out)
    assert listed["count"] == 1 and listed["data"][0]["id"] == job_id

    code, out, _ = cli(capsys, "cancel", job_id, "--url", url)
    assert code == 0 and out.strip() == f"{job_id}  cancelled"
    code, _, err = cli(capsys, "cancel", job_id, "f" * 32, "--url", url)
    assert code == 1
    assert "already cancelled" in err and "does not exist" in err and "Traceback" not in err


def test_a_repeated_idempotency_key_gives_the_same_job(api, arch, capsys):
    url = api().url
    _, first, _ = cli(capsys, "submit", arch, "--url", url, "--idempotency-key", "run-1", "--json")
    _, again, _ = cli(capsys, "submit", arch, "--url", url, "--idempotency-key", "run-1", "--json")
    assert json.loads(first)["id"] == json.loads(again)["id"]
    code, _, err = cli(capsys, "submit", arch, "--url", url, "--idempotency-key", "run-1", "--label", "other")
    assert code == 1 and "different request body" in err


def test_bad_input_exits_2_with_the_file_line_or_field(api, arch, tmp_path, capsys):
    url = api().url
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "schema": "peng4nn.arch/v1",\n  "layers": [\n')
    code, _, err = cli(capsys, "submit", str(broken), "--url", url)
    assert code == 2 and f"{broken}:4:" in err and "invalid JSON" in err
    code, _, err = cli(capsys, "submit", arch, "--url", url, "--dataset", "nope")
    assert code == 2 and "body.dataset: unknown dataset 'nope'" in err
    code, _, err = cli(capsys, "submit", arch, "--url", url, "--policy-params", "[1]")
    assert code == 2 and "--policy-params must be a JSON object" in err
    code, _, err = cli(capsys, "jobs", "--url", url, "--status", "done")
    assert code == 2 and "--status must be one of queued, running" in err
    code, _, err = cli(capsys, "submit", arch, arch, "--url", url, "--idempotency-key", "k")
    assert code == 2 and "names one submission" in err
    code, out, _ = cli(capsys, "jobs", "--url", url)
    assert code == 0 and "0 of 0 job(s)" in out  # nothing was queued by any of the above


def test_the_token_comes_from_the_environment(api, arch, capsys, monkeypatch):
    url = api(api_tokens="secret").url
    monkeypatch.delenv("PENG4NN_API_TOKEN", raising=False)
    code, _, err = cli(capsys, "jobs", "--url", url)
    assert code == 1 and "missing bearer token" in err
    monkeypatch.setenv("PENG4NN_API_TOKEN", "secret")
    code, out, _ = cli(capsys, "jobs", "--url", url)
    assert code == 0 and "0 of 0 job(s)" in out


def test_an_unreachable_service_is_one_line_and_exit_1(capsys):
    from peng4nn_store.embedded import free_port

    code, _, err = cli(capsys, "jobs", "--url", f"http://127.0.0.1:{free_port()}", "--deadline", "0")
    assert code == 1 and err.count("\n") == 1 and "cannot reach the PEng4NN service" in err


def test_watch_a_job_and_a_search_until_they_end(api, worker_factory, arch, capsys):
    url = api().url
    worker_factory()
    code, out, _ = cli(capsys, "submit", arch, "--url", url, "--estimator", '{"e_max": 1}', "--policy", "fixed",
                       "--policy-params", '{"k": 1}', "--watch")
    assert code == 0
    lines = out.splitlines()
    assert "running" in out and sum(line.strip().startswith("epoch") for line in lines) == 2  # E = 0.5
    assert re.fullmatch(r"completed: estimate \d+\.\d\d% after 1\.0 epochs", lines[-1]), lines[-1]

    job_id = lines[0].split()[0]
    code, out, _ = cli(capsys, "watch", job_id, "--url", url, "--json")  # an ended job: its whole history
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["event"] == "status" and events[-1]["event"] == "result"

    code, out, _ = cli(capsys, "submit", arch, arch, "--url", url, "--search", "s1", "--estimator",
                       '{"e_max": 1}', "--policy", "paper", "--watch")
    assert code == 0
    assert "search s1: 2 jobs, 2 ended, 0 running" in out
    ids = [line.split()[0] for line in out.splitlines()[:2]]
    assert all(i in out.split("\n", 2)[2] for i in ids)  # both jobs shown in the live view
    code, _, err = cli(capsys, "watch", "--search", "nope", "--url", url)
    assert code == 1 and "search nope: no jobs" in err
