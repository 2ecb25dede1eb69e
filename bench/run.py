"""Entry point: `python -m bench.run [--quick] [--only N[,N…]]` from the repository root.

Starts the upstream registry on loopback (its storage in `bench/work/upstream/`, kept between
runs), makes sure the generated images are there, runs the selected measurements one server at a
time, and writes the report (`bench/RESULTS.md` for a full run of everything).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from tests.rig.registry import UpstreamRegistry

from bench import env, metrics_cost, phases, report, scaleout, scanning_cost
from bench.images import MiB, ensure_images, specs
from bench.phases import Settings
from bench.servers import export_source

BENCH_DIR = Path(__file__).resolve().parent
WORK = BENCH_DIR / "work"
ALL = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)


def _parse_only(text: str) -> tuple[int, ...]:
    numbers = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    if not numbers or any(n not in ALL for n in numbers):
        raise argparse.ArgumentTypeError("--only takes measurement numbers 1-11, e.g. 1 or 2,4")
    return numbers


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description="pullthrough vs distribution proxy vs nginx"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller blobs, shorter runs (for iteration)"
    )
    parser.add_argument(
        "--only", type=_parse_only, default=ALL, help="measurements to run, e.g. 1 or 2,4"
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="pullthrough workers"
    )
    parser.add_argument(
        "--rev",
        default=None,
        help="benchmark this git revision's src/ (exported to bench/work/) instead of the "
        "working tree, e.g. HEAD while others edit",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="run pullthrough from this src/ directory (a copy of the tree) instead",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="report path (default: bench/RESULTS.md for a full run of everything, "
        "bench/work/RESULTS-partial.md otherwise)",
    )
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    only: tuple[int, ...] = args.only
    quick: bool = args.quick
    output: Path = args.output or (
        BENCH_DIR / "RESULTS.md" if not quick and only == ALL else WORK / "RESULTS-partial.md"
    )
    env.ensure_packages()
    started = time.monotonic()
    run_dir = WORK / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    if quick:
        sizes = specs(
            big=256 * MiB,
            small=64 * MiB,
            cold_total=100 * MiB,
            swarm_layer=2 * MiB,
            slow_total=96 * MiB,
        )
    else:
        sizes = specs(
            big=1024 * MiB,
            small=256 * MiB,
            cold_total=500 * MiB,
            swarm_layer=8 * MiB,
            slow_total=320 * MiB,
        )
    source: Path | None = args.source.resolve() if args.source else None
    if args.rev:
        source = export_source(args.rev, WORK)
    settings = Settings(
        workdir=run_dir,
        workers=args.workers,
        wrk_seconds=3 if quick else 10,
        wrk_connections=64,
        wrk_threads=2,
        single_repetitions=2 if quick else 5,
        parallel_repetitions=1 if quick else 3,
        parallel_clients=8,
        cold_repetitions=1 if quick else 3,
        swarm_clients=50,
        pull_parallel=3,
        source=source,
        s3_single_repetitions=2 if quick else 3,
        s3_parallel_repetitions=1,
        replica_clients=12,
        replica_repetitions=1 if quick else 2,
        cold_blob_repetitions=2 if quick else 5,
        log_rounds=2 if quick else 5,
        slow_repetitions=3,
    )
    results = report.Results(
        machine=env.machine(),
        versions=env.versions(args.rev, args.source),
        settings=settings,
        quick=quick,
        only=only,
        load_before=env.load_average(),
    )
    clock_before = env.cpu_clock()
    upstream = UpstreamRegistry(
        WORK / "upstream" / "storage", workdir=WORK / "upstream" / "registry"
    )
    upstream.start()
    failure: BaseException | None = None
    try:
        print(f"upstream registry on {upstream.url}; images:", flush=True)
        results.images = ensure_images(upstream.url, WORK, sizes)
        _run_phases(results, upstream, settings, only, started)
    except Exception as exc:  # keep what was measured; report the failure
        failure = exc
        results.failure = "".join(traceback.format_exception(exc))
        output = WORK / "RESULTS-partial.md"
    finally:
        upstream.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    results.duration = time.monotonic() - started
    results.load_after = env.load_average()
    clock_after = env.cpu_clock()
    busy = clock_after[0] - clock_before[0]
    own = clock_after[1] - clock_before[1]
    results.foreign_cpu_share = max(0.0, busy - own) / (results.duration * results.machine.cpus)
    output.parent.mkdir(parents=True, exist_ok=True)
    (WORK / "results.json").write_text(
        json.dumps(dataclasses.asdict(results), indent=2, default=str)
    )
    output.write_text(report.render(results))
    print(f"[{results.duration:6.1f}s] wrote {output}", flush=True)
    print(report.summary(results), flush=True)
    if failure is not None:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    return 0


def _run_phases(
    results: report.Results,
    upstream: UpstreamRegistry,
    settings: Settings,
    only: tuple[int, ...],
    started: float,
) -> None:
    images = results.images
    assert images is not None

    def step(title: str) -> None:
        results.phase_load.append((title, env.load_average()))
        print(f"[{time.monotonic() - started:6.1f}s] {title}", flush=True)

    if {1, 5} & set(only):
        step("warm blobs: pullthrough (cold fills, peak RSS), distribution, nginx")
        warm, results.memory = phases.warm_blobs(
            upstream, images, settings, blobs=1 in only, memory=5 in only
        )
        results.warm.update(warm)
    if 2 in only:
        step("manifests: pullthrough, distribution, pullthrough with its request log")
        manifests, results.request_log = phases.manifest_rates(upstream, images, settings)
        for name, figures in manifests.items():
            results.warm.setdefault(name, phases.ServerFigures(name)).manifests.update(
                figures.manifests
            )
    if 3 in only:
        step("cold pulls: direct, pullthrough, distribution proxy")
        results.cold = phases.cold_pulls(upstream, images, settings)
    if 8 in only:
        step("cold big blob: pullthrough, distribution proxy, alternating, each empty")
        results.cold_blob = phases.cold_blob(upstream, images, settings)
    if 9 in only:
        step("cold pulls from a slow upstream: direct, pullthrough, distribution proxy")
        results.slow = phases.slow_upstream(upstream, images, settings)
    if 4 in only:
        step(f"{settings.swarm_clients} concurrent cold pulls")
        results.swarm = phases.swarm(upstream, images, settings)
    if 6 in only:
        step("warm blobs on S3: filesystem, S3 streamed, S3 redirected, Swift directly")
        results.s3_blobs = scaleout.s3_blobs(upstream, images, settings)
    if 7 in only:
        step(f"{settings.replica_clients} cold pulls: 1 on the filesystem, 1 and 3 replicas")
        results.replicas = scaleout.replica_pulls(upstream, images, settings)
    if 10 in only:
        step("metrics on vs off: manifest and blob GETs, alternating")
        results.metrics = metrics_cost.metrics_cost(upstream, images, settings)
    if 11 in only:
        step("scanning: scan time per fixture image; cold and warm pulls while scans run")
        results.scanning = scanning_cost.scanning_cost(upstream, images, settings)


if __name__ == "__main__":
    sys.exit(main())
