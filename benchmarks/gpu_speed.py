"""MIMS (Keras 3 on JAX) versus MONAI's `MILModel` (PyTorch) on one GPU: training steps fed from host memory.

Both sides get the same bags, generated from one seed and held in host memory as uint8
(`--bags` bags of `--instances` instances at 224x224x3, one bag per step, two classes),
weights None, Adam (learning rate 1e-4), cross-entropy, and their normal input path:

- MIMS: `model.fit` on the uint8 arrays. Keras's JAX trainer copies each batch to the
  device one step ahead of the step that uses it; the model casts to float on the device,
  inside the compiled (XLA) step. Settings: `bf16` (mixed_bfloat16), `fp16`
  (mixed_float16, Keras's loss scaling), `bf16_f32in` (float32 bags, 4x the bytes to copy).
- MONAI: a `DataLoader` over the uint8 tensor, 2 workers, `pin_memory=True`, `non_blocking`
  copies, cast and scale on the device, `channels_last`, cudnn.benchmark, fused Adam;
  autocast in fp16 (with a `GradScaler`) or bf16. `MILModel(mil_mode="att")`, its default
  attention pooling, with torchvision's ResNet (MONAI's own ResNet where torchvision is missing).

A step's time is the time of one epoch over the `--bags` bags (one `fit` call, one pass over
the loader, synchronised at its end) divided by the bags; epochs are interleaved round by
round across a side's settings and the median of `--rounds` kept. Each side, backbone and
setting runs in the worker of its side and backbone (its own process); a worker that runs out
of `--budget` seconds skips its remaining settings, and the figures use what finished.

    bash benchmarks/gpu_speed.sh              # on the lent GPU machine (JAX, PyTorch, no TensorFlow)
    KERAS_BACKEND=jax python benchmarks/gpu_speed.py --instances 2 --image-size 32 --bags 2 --rounds 1  # CPU check

Ends with one line per figure: `mims_over_monai_train_gpu_r50`, `mims_over_monai_train_gpu_r101`
(each side at its best setting; target <= 0.8), `mims_over_mi_pre_gpu_r50` (head overhead).
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repository, for mims_tf

SHORT = {"resnet50": "r50", "resnet101": "r101"}


def make_bags(args):
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (args.bags, args.instances, args.image_size, args.image_size, 3)
    return rng.integers(0, 256, size=shape, dtype=np.uint8), np.arange(args.bags, dtype=np.int32) % 2


def timed_epochs(epochs, args, deadline):
    """Runs each epoch function once per round, interleaved; returns `(name -> median seconds per step,
    name -> epochs timed)`."""
    import statistics

    times = {name: [] for name in epochs}
    for round_index in range(args.rounds):
        timed = []
        for name, epoch in epochs.items():
            if time.monotonic() > deadline and times[name]:
                continue  # out of budget: the rounds already timed are kept
            start = time.perf_counter()
            epoch()
            times[name].append((time.perf_counter() - start) / args.bags)
            timed.append(f"{name} {times[name][-1] * 1e3:.1f} ms")
        print(f"    round {round_index + 1}/{args.rounds}: " + (", ".join(timed) or "skipped, out of budget"),
              file=sys.stderr, flush=True)
    return {name: statistics.median(t) for name, t in times.items() if t}, {name: len(t) for name, t in times.items()}


def mims_worker(args, deadline):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras
    import numpy as np

    from mims_tf.models import build_model

    bags, labels = make_bags(args)
    policies = {"bf16": "mixed_bfloat16", "fp16": "mixed_float16", "bf16_f32in": "mixed_bfloat16",
                "fp32": "float32"}
    epochs, info = {}, {}
    for setting in args.mims_settings.split(","):
        preset, precision = setting.split(":")
        if time.monotonic() > deadline:
            print(f"  skipped {setting}: out of budget", file=sys.stderr, flush=True)
            continue
        start = time.perf_counter()
        keras.utils.set_random_seed(0)
        model = build_model(preset, dtype=policies[precision], backbone=args.backbone, weights=None,
                            image_size=(args.image_size, args.image_size))
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
        x = bags.astype(np.float32) if precision.endswith("f32in") else bags

        def epoch(model=model, x=x):
            model.fit(x, labels, batch_size=1, epochs=1, shuffle=False, verbose=0)

        epoch()  # compiles
        info[setting] = round(time.perf_counter() - start, 1)
        print(f"  {setting}: built and compiled in {info[setting]} s", file=sys.stderr, flush=True)
        epochs[setting] = epoch
    steps, rounds = timed_epochs(epochs, args, deadline)
    import jax

    transfer = {}
    for name, array in (("uint8", bags[0]), ("float32", bags[0].astype(np.float32))):
        jax.device_put(array).block_until_ready()
        start = time.perf_counter()
        for _ in range(5):
            jax.device_put(array).block_until_ready()
        transfer[name] = (time.perf_counter() - start) / 5
    return {"steps": steps, "rounds": rounds, "compile_s": info, "copy_one_bag_s": transfer,
            "versions": f"Keras {keras.__version__} on JAX {jax.__version__}, {jax.devices()[0].device_kind}"}


def monai_worker(args, deadline):
    import monai
    import torch
    from monai.networks.nets import MILModel

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cudnn.benchmark = True
    bags, labels = make_bags(args)
    bags, labels = torch.from_numpy(bags), torch.from_numpy(labels).long()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(bags, labels), batch_size=1, shuffle=False, num_workers=2,
        pin_memory=cuda, persistent_workers=True, prefetch_factor=4)
    epochs, info = {}, {}
    for setting in args.monai_settings.split(","):
        if time.monotonic() > deadline or (setting.startswith("fp16") and not cuda):
            print(f"  skipped {setting}", file=sys.stderr, flush=True)
            continue
        start = time.perf_counter()
        torch.manual_seed(0)
        try:  # MILModel's default backbone family, built as MILModel builds it from a name
            import torchvision

            net = getattr(torchvision.models, args.backbone)(weights=None)
            features, net.fc, backbone = net.fc.in_features, torch.nn.Identity(), "torchvision"
        except ImportError:  # no torchvision: MONAI's own ResNet, the same layout
            from monai.networks import nets

            net = getattr(nets, args.backbone)(spatial_dims=2, n_input_channels=3, feed_forward=False)
            features, backbone = 2048, "monai"
        model = MILModel(num_classes=2, mil_mode="att", pretrained=False, backbone=net, backbone_num_features=features)
        model = model.to(device, memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=cuda)
        dtype = torch.float16 if setting.startswith("fp16") else torch.bfloat16
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        run = torch.compile(model) if setting.endswith("compile") else model

        def epoch(run=run, model=model, optimizer=optimizer, scaler=scaler, dtype=dtype):
            model.train()
            for x, y in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                x = x.permute(0, 1, 4, 2, 3).float().div_(255.0)  # (B, N, C, H, W) view, channels-last strides
                with torch.autocast(device.type, dtype=dtype):
                    loss = torch.nn.functional.cross_entropy(run(x).float(), y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            if cuda:
                torch.cuda.synchronize()

        epoch()  # cudnn.benchmark picks its kernels; torch.compile compiles
        info[setting] = round(time.perf_counter() - start, 1)
        print(f"  {setting}: built and first epoch in {info[setting]} s ({backbone} backbone)", file=sys.stderr,
              flush=True)
        epochs[setting] = epoch
    steps, rounds = timed_epochs(epochs, args, deadline)
    name = torch.cuda.get_device_name() if cuda else "cpu"
    return {"steps": steps, "rounds": rounds, "compile_s": info,
            "versions": f"PyTorch {torch.__version__}, MONAI {monai.__version__}, {name}"}


def run_worker(side, backbone, args, budget):
    command = [sys.executable, HERE, *sys.argv[1:], "--worker", side, "--backbone", backbone, "--budget", str(budget)]
    try:
        completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=budget + 120)
    except subprocess.TimeoutExpired:
        print(f"  {side} {backbone}: worker timed out", flush=True)
        return None
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode or not lines:
        print(f"  {side} {backbone}: worker failed (exit {completed.returncode})", flush=True)
        return None
    return json.loads(lines[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="resnet50,resnet101")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--instances", type=int, default=64, help="instances per bag (one bag per step)")
    parser.add_argument("--bags", type=int, default=16, help="bags per timed epoch")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per setting (median)")
    parser.add_argument("--mims-settings", default="mims:bf16,mims:fp16,mi_pre:bf16,mims:bf16_f32in",
                        help="preset:precision pairs; precision of bf16, fp16, bf16_f32in, fp32")
    parser.add_argument("--mims-settings-r101", default="mims:bf16,mims:fp16", help="the same for ResNet-101")
    parser.add_argument("--monai-settings", default="fp16,bf16", help="of fp16, bf16, fp16_compile, bf16_compile")
    parser.add_argument("--budget", type=float, default=420, help="seconds for all workers together")
    parser.add_argument("--worker", choices=("mims", "monai"), help=argparse.SUPPRESS)
    parser.add_argument("--backbone", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.worker == "mims" and args.backbone != "resnet50":
            args.mims_settings = args.mims_settings_r101
        worker = mims_worker if args.worker == "mims" else monai_worker
        print(json.dumps(worker(args, time.monotonic() + args.budget)), flush=True)
        return

    backbones = args.backbones.split(",")
    print(f"gpu_speed: bags of {args.instances}x{args.image_size}x{args.image_size}x3 uint8, {args.bags} bags an "
          f"epoch, {args.rounds} rounds (median), backbones {', '.join(backbones)}", flush=True)
    end = time.monotonic() + args.budget
    # The budget is split evenly over the workers still to run; MONAI's (no compilation) first.
    jobs = [("monai", b) for b in backbones] + [("mims", b) for b in backbones]
    results = {}
    for index, (side, backbone) in enumerate(jobs):
        share = max(30.0, (end - time.monotonic()) / (len(jobs) - index))
        if side == "mims" and len(jobs) - index == 2:  # ResNet-50 (more settings) gets more
            share = max(30.0, (end - time.monotonic()) * 0.6)
        print(f"{side} {backbone} (budget {share:.0f} s):", flush=True)
        result = run_worker(side, backbone, args, share)
        if result is None:
            continue
        results[side, backbone] = result
        print(f"  {result['versions']}", flush=True)
        for setting, seconds in result["steps"].items():
            print(f"  {setting}: {seconds * 1e3:.1f} ms a step (median of {result['rounds'][setting]} epochs), "
                  f"{args.instances / seconds:.0f} images/s "
                  f"(compiled or warmed up in {result['compile_s'][setting]} s)",
                  flush=True)
        if "copy_one_bag_s" in result:
            print("  copying one bag to the device: " + ", ".join(
                f"{k} {v * 1e3:.2f} ms" for k, v in result["copy_one_bag_s"].items()), flush=True)
    figures = {}
    for backbone in backbones:
        mims, monai = results.get(("mims", backbone)), results.get(("monai", backbone))
        if not (mims and monai and monai["steps"]):
            continue
        ours = {k: v for k, v in mims["steps"].items() if k.startswith("mims:")}
        if ours:
            best_ours = min(ours.items(), key=lambda i: i[1])
            best_theirs = min(monai["steps"].items(), key=lambda i: i[1])
            print(f"best {backbone}: mims {best_ours[0]} {best_ours[1] * 1e3:.1f} ms "
                  f"({args.instances / best_ours[1]:.0f} images/s), monai {best_theirs[0]} "
                  f"{best_theirs[1] * 1e3:.1f} ms ({args.instances / best_theirs[1]:.0f} images/s)", flush=True)
            figures[f"mims_over_monai_train_gpu_{SHORT.get(backbone, backbone)}"] = best_ours[1] / best_theirs[1]
        steps = mims["steps"]
        for precision in ("bf16", "fp16"):
            if f"mims:{precision}" in steps and f"mi_pre:{precision}" in steps:
                figures[f"mims_over_mi_pre_gpu_{SHORT.get(backbone, backbone)}"] = (
                    steps[f"mims:{precision}"] / steps[f"mi_pre:{precision}"])
                break
    for name, value in figures.items():
        print(f"{name}: {value:.3f}")


if __name__ == "__main__":
    main()
