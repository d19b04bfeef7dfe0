"""`edgegen doctor` on a CPU machine: the environment report, and the conformance run on the CPU provider."""
import json
import subprocess
import sys

from edgegen.doctor import conformance, environment


def doctor(*args):
    return subprocess.run([sys.executable, "-m", "edgegen", "doctor", *map(str, args)], capture_output=True, text=True,
                          check=False)


def test_environment_on_a_cpu_machine():
    env = environment()
    assert "CPUExecutionProvider" in env["providers"] and env["onnxruntime"]
    assert set(env["libraries"]) == {"CUDA runtime", "cuBLAS", "cuDNN", "TensorRT"}
    if env["kind"] == "cpu":
        assert env["missing"] == []
    run = doctor("--json")
    assert run.returncode == 0 and json.loads(run.stdout)["environment"]["providers"] == env["providers"]


def test_conformance_passes_on_the_cpu_and_fails_against_another_model(exported):
    run = doctor(exported["mars"], "--provider", "cpu")
    assert run.returncode == 0, run.stderr
    assert "conformance: passed" in run.stdout and "forward ms by new tokens: 1:" in run.stdout
    from edgegen import load

    engine = load(exported["mars"], provider="cpu").engine  # what is allocated, not what is assumed
    allocated = sum(array.nbytes for array in engine._kv_host)
    assert engine.kv_bytes == allocated
    assert f"KV cache: {allocated / 2**20:.1f} MiB for {engine.max_context} tokens" in run.stdout
    other = conformance(exported["mars"], "cpu", exported["qwen2_4x"], threads=1)  # other weights, other tokens
    assert not other["passed"] and other["modes"]["ar"]["mismatches"]
    first = other["modes"]["ar"]["mismatches"][0]
    assert first["gap"] is None or first["gap"] > 0  # the reference preferred its own token
    assert conformance(exported["mars"], "cpu", exported["qwen2_4x"], 1, tie_gap=1e9)["passed"] == all(
        m["gap"] is not None for row in other["modes"].values() for m in row["mismatches"])


def test_unknown_provider_is_a_clear_error(exported):
    run = doctor(exported["mars"], "--provider", "tensorrt")
    assert run.returncode == 1 and "tensorrt" in run.stderr and "Traceback" not in run.stderr
