"""What a result depends on besides its config: code, packages, CPU, threads, oneDNN, device, determinism.

Two runs with the same seed and config on one machine agree to the last bit; on another CPU, kernels that
use other instructions change the floating-point path, and training amplifies the difference (single-seed
AUROC moved by 0.05 to 0.08 between an Intel Xeon and an AMD EPYC). So every run and every bench row
records `environment()`, and `fingerprint()` names the machine-and-code combination a number came from.
"""

import logging
import os
import platform
import subprocess

ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "sse4_2")


def code_version():
    """`(commit, clean)` of the git checkout the package runs from; `("unknown", None)` outside one."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "-C", here, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no", "--", "."],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    return commit, not status


def cpu():
    """`(model name, the instruction-set flags in ISA_FLAGS that this CPU has)` from /proc/cpuinfo."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and ":" in line:
                    flags = set(line.split(":", 1)[1].split())
                if model and flags:
                    break
    except OSError:
        pass
    return model, [flag for flag in ISA_FLAGS if flag in flags]


def disable_onednn():
    """Turns TensorFlow's oneDNN CPU kernels off (`TF_ENABLE_ONEDNN_OPTS=0`), for bit-reproducible runs.

    Must be called before TensorFlow is imported: TensorFlow reads the variable once, when it starts.
    """
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"


def onednn_enabled():
    """TensorFlow's oneDNN CPU kernels: on unless TF_ENABLE_ONEDNN_OPTS=0 was set before TensorFlow started."""
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") not in ("0", "false", "False")


def environment():
    """A JSON-able dict of everything a result depends on besides its config."""
    import keras
    import numpy as np

    import mims_tf

    commit, clean = code_version()
    model, flags = cpu()
    info = {
        "commit": commit, "clean": clean, "mims_tf": mims_tf.__version__, "keras": keras.__version__,
        "backend": keras.backend.backend(), "numpy": np.__version__, "python": platform.python_version(),
        "cpu": model, "isa": flags, "cores": os.cpu_count(), "onednn": onednn_enabled(),
        "threads": {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                                                             "TF_NUM_INTEROP_THREADS")},
        "deterministic": os.environ.get("TF_DETERMINISTIC_OPS") == "1",
        "devices": [],
    }
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["devices"] = [d.name for d in tf.config.list_logical_devices() if d.device_type != "CPU"]
        info["threads"].update(intra_op=tf.config.threading.get_intra_op_parallelism_threads(),
                               inter_op=tf.config.threading.get_inter_op_parallelism_threads())
        info["deterministic"] = info["deterministic"] or _op_determinism(tf)
    return info


def _op_determinism(tf):
    try:
        return bool(tf.config.experimental.is_op_determinism_enabled())
    except AttributeError:
        return False


def fingerprint(info):
    """A short name of the code and machine behind a result: `<commit>[+] <cpu> [onednn-off] [det]`."""
    dirty = "" if info.get("clean", True) else "+"
    parts = [f"{info.get('commit', 'unknown')}{dirty}", info.get("cpu", "unknown cpu")]
    if info.get("onednn") is False:
        parts.append("oneDNN off")
    if info.get("deterministic"):
        parts.append("deterministic")
    if info.get("devices"):
        parts.append("+".join(info["devices"]))
    return ", ".join(parts)


def make_deterministic(threads=1):
    """Deterministic TensorFlow kernels and fixed thread counts, in this process.

    Call before TensorFlow runs its first op; oneDNN can only be turned off before TensorFlow is imported
    (`TF_ENABLE_ONEDNN_OPTS=0`, which `mims train --deterministic` sets). Returns what was set.
    """
    os.environ["TF_DETERMINISTIC_OPS"] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    fixed = True
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran an op in this process: its thread pools are fixed already
        fixed = False
        logging.getLogger("mims_tf").warning(
            "deterministic: TensorFlow was already running, so its thread counts stay as they were")
    return {"op_determinism": True, "threads": threads if fixed else None, "onednn": onednn_enabled()}


def default_precision():
    """mixed_float16 on a GPU, mixed_bfloat16 on a CPU with AMX, float32 on other CPUs.

    Measured on this project's CPUs (AVX-512 BF16, no AMX): mixed_bfloat16 trains ResNet-50 about 1.4x
    slower than float32, and float16 convolutions about 1000x slower, so bfloat16 is the CPU default
    only where AMX tiles do the matrix work.
    """
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_amx() else "float32"


def cpu_has_amx():
    """True where /proc/cpuinfo lists the amx_bf16 flag (Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any("amx_bf16" in line for line in f if line.startswith("flags"))
    except OSError:
        return False
