"""The `tenure` command: synth, train, serve, demo, and run (all of it, end to end)."""
from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tenure.errors import ConfigError, DataError, TenureError

log = logging.getLogger("tenure")
SERVICES = ("scoring", "recommendation", "segmentation")
MODELS_HELP = "the model repository (default: TENURE_MODELS_DIR, else the settings file's models_dir, else models)"
STATE_HELP = "the services' state directory (default: TENURE_STATE_DIR, else the settings file's state_dir, else state)"


GENERATOR_FILE = "generator.txt"
GENERATOR = "tenure.synthetic 13"
"""Which synthetic generator wrote data/shop (bumped when generate_shop's output changes: per-customer rhythms
and time zones, campaigns, form attributes in issue 13)."""


def _synth(args: argparse.Namespace) -> None:
    from tenure.data import write_shop
    from tenure.synthetic import generate_shop

    shop = generate_shop(n_customers=args.customers, seed=args.seed)
    path = write_shop(shop, args.out)
    (path / GENERATOR_FILE).write_text(f"{GENERATOR}\n", encoding="utf-8")  # `tenure run` regenerates an older shop
    print(f"synthetic shop: {len(shop.transactions):,} lines, {shop.transactions['customer_id'].nunique():,} "
          f"customers -> {path}")
    if shop.campaigns is not None:  # randomised campaigns with a known true uplift (tenure.campaigns)
        c = shop.campaigns
        print(f"  campaigns: {c['campaign_id'].nunique()} sends with a randomised control group, {len(c):,} rows "
              f"({int(c['treated'].sum()):,} treated) -> {path / 'campaigns.parquet'}")


def _train(args: argparse.Namespace) -> None:
    import dataclasses

    from tenure.data import CANONICAL, ColumnMapping, load_cdnow, load_shop, read_shop
    from tenure.progress import progress_bar
    from tenure.settings import TrainSettings
    from training.pipeline import CDNOW_STEPS, TRAIN_STEPS, metrics_table, read_feedback, train_all, train_cdnow

    settings = TrainSettings.from_sources(
        Path(args.config) if args.config else None, churn_horizon_days=args.churn_horizon_days,
        clv_horizon_days=args.clv_horizon_days, purchase_horizons=args.purchase_horizons)
    models = Path(args.models)
    if args.engine == "dask":
        _train_dask(args, settings, models)
        return
    feedback = read_feedback(Path(args.state)) if args.state else None
    if args.dataset == "cdnow":
        shop = load_cdnow(cache_dir=Path(args.data))
    elif args.dataset == "completejourney":
        from tenure.datasets import load_completejourney

        shop = load_completejourney(cache_dir=Path(args.data))
        if not getattr(args, "campaigns", None):  # its targeted campaigns: an observational log for uplift (tenure.campaigns)
            from tenure.campaigns import with_completejourney_campaigns

            shop = with_completejourney_campaigns(shop, Path(args.data))
    elif args.transactions:
        mapping = ColumnMapping.from_json(args.mapping) if args.mapping else CANONICAL
        if args.encoding:  # the flag wins over the mapping's "encoding"
            mapping = dataclasses.replace(mapping, encoding=args.encoding)
        if getattr(args, "customers_mapping", None):  # the customers file's columns and attributes (tenure.attributes)
            from tenure.attributes import CustomersMapping

            mapping = dataclasses.replace(mapping, customers=CustomersMapping.from_json(args.customers_mapping))
        shop, report = load_shop(args.transactions, mapping=mapping, customers_path=args.customers_file)
        print(report.summary())
    else:
        shop = read_shop(args.shop)
    if getattr(args, "campaigns", None):  # the campaign log for uplift (tenure.campaigns), with its control groups
        from tenure.campaigns import CampaignMapping, campaign_summary, load_campaigns

        cmap = CampaignMapping.from_json(args.campaigns_mapping) if args.campaigns_mapping else CampaignMapping()
        if args.encoding:
            cmap = dataclasses.replace(cmap, encoding=args.encoding)
        campaigns = load_campaigns(args.campaigns, cmap, customers=shop.transactions["customer_id"].drop_duplicates())
        shop = dataclasses.replace(shop, campaigns=campaigns)
        summary = campaign_summary(campaigns)
        print(f"{Path(args.campaigns).name}: {len(campaigns):,} sends of {len(summary)} campaigns "
              f"({int(summary['treated'].sum()):,} treated, {int(summary['control'].sum()):,} control)")
    if args.name:
        shop = dataclasses.replace(shop, name=args.name)
    name = shop.name
    steps = CDNOW_STEPS if args.dataset == "cdnow" else TRAIN_STEPS
    with progress_bar(f"train {name}", len(steps), args.progress) as bar:  # gone before the table is printed
        if args.dataset == "cdnow":
            results = train_cdnow(shop, models, settings, progress=bar.step)
        else:
            results = train_all(shop, models, settings, feedback=feedback, progress=bar.step)
    print(f"\nHoldout metrics ({name}; time split, never tuned on the holdout window):\n")
    print(metrics_table(results, name))
    print()
    if feedback is not None and len(feedback) and args.dataset != "cdnow":
        from tenure.feedback import position_report

        print(f"Recommendation feedback used ({len(feedback):,} events from {args.state}):\n")
        print(position_report(feedback).to_text())
        print()


def _train_dask(args: argparse.Namespace, settings: object, models: Path) -> None:
    """`train --engine dask`: churn on a Parquet dataset, on a Dask cluster (training.dask_engine)."""
    from tenure.data import load_customers
    from tenure.settings import TrainSettings
    from training.dask_engine import train_dask
    from training.pipeline import metrics_table

    if not args.transactions or args.dataset != "shop" or args.mapping:
        raise DataError("--engine dask trains on --transactions DIR_OR_GLOB (Parquet files with the canonical "
                        "columns; no --mapping, --dataset or --shop)")
    assert isinstance(settings, TrainSettings)
    customers = load_customers(args.customers_file, args.encoding or "utf-8") if args.customers_file else None
    name = args.name or Path(str(args.transactions).rstrip("/*")).name
    results = train_dask(args.transactions, models, settings, scheduler=args.scheduler, customers=customers,
                         dataset=name)
    print(f"\nHoldout metrics ({name}; dask engine: churn only; time split, never tuned on the holdout window):\n")
    print(metrics_table(results, name))
    print()


def _unix_seconds(text: str | None) -> float | None:
    """An ISO date/time (UTC unless it says otherwise) as Unix seconds; None stays None."""
    import pandas as pd

    if not text:
        return None
    ts = pd.Timestamp(text)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts).timestamp()


def _feedback_report(args: argparse.Namespace) -> None:
    from tenure.feedback import FeedbackStore

    path = Path(args.state) / "feedback.sqlite"
    if not path.exists():
        raise DataError(f"no feedback recorded under {args.state} ({path} does not exist)")
    report = FeedbackStore(path, index_days=0).report(_unix_seconds(args.since), _unix_seconds(args.until))
    print(report.to_text())


def _snapshot(args: argparse.Namespace) -> None:
    import pandas as pd

    from tenure.data import read_shop
    from tenure.progress import progress_bar
    from training.pipeline import SNAPSHOT_STEPS, data_end, write_snapshot

    total = len(SNAPSHOT_STEPS) + 1
    with progress_bar("snapshot", total, args.progress) as bar:
        bar.step(0, total, "reading the shop")
        shop = read_shop(args.shop)
        cutoff = pd.Timestamp(args.at) if args.at else data_end(shop) + pd.Timedelta(days=args.days_after)
        snapshot, path = write_snapshot(shop, Path(args.models), cutoff,
                                        progress=lambda done, steps, what: bar.step(done + 1, steps + 1, what))
    print(f"feature snapshot of {len(snapshot.customer_ids):,} customers at {cutoff.date()} -> {path}")


def _lookalike(args: argparse.Namespace) -> None:
    from tenure.progress import progress_bar
    from tenure.settings import TrainSettings
    from training.pipeline import metrics_table, train_lookalike

    seed = Path(args.seed_file).read_text().split() if args.seed_file else None
    with progress_bar(f"lookalike {args.name}", 100, args.progress) as bar:
        bar.fraction(0.0, "loading the feature snapshot")
        result = train_lookalike(Path(args.models), TrainSettings(), seed, name=args.name, progress=bar.fraction)
    print(metrics_table([{**result, "name": "lookalike"}], args.name))


def _import_onnx(args: argparse.Namespace) -> None:
    from training.export import import_onnx

    names = Path(args.feature_names).read_text().split() if args.feature_names else None
    path = import_onnx(Path(args.models), args.name, Path(args.onnx), names,
                       lightgbm=Path(args.lightgbm) if args.lightgbm else None)
    print(f"imported {args.onnx} as {args.name} -> {path}")


def _serve(args: argparse.Namespace) -> None:
    from tenure.settings import ServiceSettings

    settings = ServiceSettings.from_env(args.settings, models_dir=Path(args.models) if args.models else None,
                                        state_dir=Path(args.state) if args.state else None, host=args.host,
                                        ort_threads=args.ort_threads, workers=args.workers,
                                        metrics_port=args.metrics_port, otlp_endpoint=args.otlp_endpoint)
    if args.service == "scoring":
        from services.scoring.__main__ import main
    elif args.service == "recommendation":
        from services.recommendation.__main__ import main
    else:
        from services.segmentation.__main__ import main
    main(settings, args.port)


def _demo(args: argparse.Namespace) -> None:
    from services.demo import run_demo

    # With the services on one Redis (TENURE_ONLINE_STORE=redis://... here too), the demo's event is sent once.
    run_demo(args.scoring, args.recommendation, args.segmentation, Path(args.models),
             shared_store=_shared_store(os.environ.get("TENURE_ONLINE_STORE", "")))


def _shared_store(url: str) -> bool:
    """Whether an online_store setting is one store the services share (Redis) rather than one per process."""
    return url.split("://", 1)[0] in ("redis", "rediss", "unix")


def _health(args: argparse.Namespace) -> None:
    from tenure.client import BaseClient

    try:
        with BaseClient.from_env(args.target) as client:  # TLS / token from TENURE_TLS_CA_FILE, TENURE_TOKEN_FILE
            client.wait_until_serving(args.timeout_s)
    except TimeoutError as err:
        print(err, file=sys.stderr)
        raise SystemExit(1) from err
    print(f"{args.target} SERVING")


def _ingest(args: argparse.Namespace) -> None:
    """tenure ingest (tenure.ingest): exit 1 when some event was rejected or some line unreadable."""
    from tenure.ingest import run_ingest

    code = run_ingest(args.target, args.file, args.from_kafka, args.topic, args.group, args.batch_events,
                      sys.stdout, sys.stderr)
    if code:
        raise SystemExit(code)


def _models(args: argparse.Namespace) -> None:
    """tenure models list|pin|unpin|rollback|gc (part: model lifecycle)."""
    from tenure import lifecycle

    repo = Path(args.models)
    if args.action == "list":
        print(lifecycle.list_text(repo))
    elif args.action == "pin" and args.clear:
        print(lifecycle.unpin_model(repo, args.name))
    elif args.action == "pin":
        if not args.version:
            raise DataError("pin NAME VERSION (or pin NAME --clear)")
        print(lifecycle.pin_version(repo, args.name, args.version))
    elif args.action == "unpin":
        print(lifecycle.unpin_model(repo, args.name))
    elif args.action == "rollback":
        print(lifecycle.rollback(repo, args.name))
    else:
        deleted = lifecycle.gc(repo, args.keep, dry_run=args.dry_run)
        verb = "would delete" if args.dry_run else "deleted"
        print("\n".join(f"{verb} {d}" for d in deleted) or "nothing to delete")


def _score_file(args: argparse.Namespace) -> None:
    if args.engine == "dask":
        from training.dask_engine import score_file_dask

        dask_report = score_file_dask(Path(args.models), args.input, Path(args.output), scheduler=args.scheduler,
                                      id_column=args.id_column)
        print(f"rows in {dask_report.rows:,}, scored {dask_report.scored:,}, unknown {dask_report.unknown:,} "
              f"({dask_report.parts} parts) -> {args.output}")
        return
    from services.client import score_file

    report = score_file(args.target, Path(args.input), Path(args.output), id_column=args.id_column,
                        chunk_rows=args.chunk_rows, part_chunks=args.part_chunks, progress=sys.stderr.isatty(),
                        notice=lambda message: print(message, file=sys.stderr))
    resumed = f", {report.resumed_parts} of {report.parts} parts from an earlier run" if report.resumed_parts else ""
    print(f"scored {report.rows:,} rows ({report.failed:,} failed) in {report.chunks} chunks{resumed}, "
          f"{'inline features' if report.inline_features else 'features looked up by id'} -> {args.output}")


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port")


def _report(args: argparse.Namespace) -> None:
    from tenure.report import write_report

    path = write_report(Path(args.models), Path(args.out), Path(args.state) if args.state else None)
    print(f"evaluation report: {path} ({path.stat().st_size / 1e3:.0f} kB; open it in a browser, no network needed)")


def _run(args: argparse.Namespace) -> None:
    """Synthetic shop -> train -> export -> three services -> demo client -> stop."""
    from tenure.settings import ServiceSettings

    data, models = Path(args.data), Path(args.models)
    if args.settings:
        os.environ["TENURE_SETTINGS_FILE"] = str(Path(args.settings).resolve())
    if args.online_store is not None:  # the services inherit it
        os.environ["TENURE_ONLINE_STORE"] = args.online_store
    online_store = ServiceSettings.from_env().online_store  # a bad setting stops here, before training
    t0 = time.perf_counter()
    exe = [sys.executable, "-m", "tenure.cli"]
    # (again when an earlier run's synthetic shop came from an older generator: e.g. without campaign logs)
    generator = data / "shop" / GENERATOR_FILE
    if not (data / "shop" / "transactions.parquet").exists() or not generator.exists() \
            or generator.read_text(encoding="utf-8").strip() != GENERATOR:
        subprocess.run([*exe, "synth", "--out", str(data / "shop")], check=True)
    # Feedback the services recorded in an earlier run (the demo records some) joins the training set.
    state = ["--state", str(data / "state")] if (data / "state" / "feedback.sqlite").exists() else []
    subprocess.run([*exe, "train", "--shop", str(data / "shop"), "--models", str(models), *state], check=True)
    subprocess.run([*exe, "train", "--dataset", "cdnow", "--data", str(data), "--models", str(models)], check=True)
    print(f"[run] trained in {time.perf_counter() - t0:.0f}s; starting the services")

    defaults = ServiceSettings()
    metrics_port = ServiceSettings.from_env().metrics_port  # each service its own: +0, +1, +2
    ports = {name: _free_port(p) for name, p in zip(SERVICES, (defaults.scoring_port, defaults.recommendation_port,
                                                                defaults.segmentation_port))}
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = {}
    env = {**os.environ, "TENURE_STATE_DIR": str(data / "state"),
           "TENURE_RECOMMENDATION_TARGET": f"127.0.0.1:{ports['recommendation']}"}
    for name, port in ports.items():
        # The segmentation service watches the repository: the demo refreshes the features later on.
        extra = {"TENURE_RELOAD_INTERVAL_S": "1"} if name == "segmentation" else {}
        if metrics_port:
            extra["TENURE_METRICS_PORT"] = str(metrics_port + SERVICES.index(name))
        with open(logs / f"{name}.log", "ab") as out:
            procs[name] = subprocess.Popen([*exe, "serve", name, "--port", str(port), "--models", str(models)],
                                           stdout=out, stderr=subprocess.STDOUT, env={**env, **extra})
    try:
        from services.demo import run_demo, show_changes, wait_serving

        for name, port in ports.items():
            wait_serving(f"127.0.0.1:{port}", timeout_s=120, proc=procs[name])
            print(f"[run] {name} SERVING on 127.0.0.1:{port} (log: {logs / (name + '.log')})")
        scoring, recommendation, segmentation = (f"127.0.0.1:{ports[n]}" for n in SERVICES)
        run_demo(scoring, recommendation, segmentation, models, shared_store=_shared_store(online_store))
        print("[run] a month later: new features for the same customers (tenure snapshot --days-after 30)")
        show_changes(segmentation, lambda: subprocess.run([*exe, "snapshot", "--shop", str(data / "shop"),
                                                           "--models", str(models), "--days-after", "30"],
                                                          check=True))
    finally:
        for proc in procs.values():
            proc.terminate()
        for name, proc in procs.items():
            code = proc.wait(timeout=30)
            print(f"[run] {name} stopped (exit {code})")
    subprocess.run([*exe, "report", "--models", str(models), "--state", str(data / "state"),
                    "--out", str(data / "report.html")], check=True)
    print(f"[run] done in {time.perf_counter() - t0:.0f}s")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=os.environ.get("TENURE_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="tenure", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tenure {version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate the deterministic synthetic shop")
    p.add_argument("--out", default="data/shop")
    p.add_argument("--customers", type=int, default=40_000)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=_synth)

    p = sub.add_parser("train", help="train, evaluate and export models to the repository")
    p.add_argument("--shop", default="data/shop", help="a shop directory written by `tenure synth`")
    p.add_argument("--dataset", choices=["shop", "cdnow", "completejourney"], default="shop",
                   help="shop: --shop or --transactions; cdnow / completejourney: the public real logs (fetched)")
    p.add_argument("--transactions", help="a CSV/Parquet export to train on instead of --shop")
    p.add_argument("--mapping", help="JSON column mapping for --transactions")
    p.add_argument("--customers-file", help="optional customers CSV/Parquet for --transactions")
    p.add_argument("--campaigns", help="campaign log CSV/Parquet for uplift: customer_id, campaign_id, treated "
                   "(true = sent, false = held out as control), sent_at (see tenure.campaigns)")
    p.add_argument("--campaigns-mapping", help="JSON mapping of --campaigns' column names (keys customer_id, "
                   "campaign_id, treated, sent_at, date_format, dayfirst, treated_values, control_values, encoding)")
    p.add_argument("--customers-mapping", help="JSON mapping of --customers-file: canonical columns and the attributes "
                   "to keep (numbers, text, sets, consents; see tenure.attributes); or the mapping's \"customers\"")
    p.add_argument("--encoding", help="text encoding of the CSV files of --transactions / --customers-file "
                   "(default utf-8, or the mapping's \"encoding\"; e.g. latin-1, cp1252)")
    p.add_argument("--name", help="the dataset's name in the metrics table and manifests (default: the file's stem)")
    p.add_argument("--data", default="data", help="cache directory (CDNOW, The Complete Journey)")
    p.add_argument("--models", help=MODELS_HELP)
    p.add_argument("--config", help="JSON file of training settings (field names of tenure.settings.TrainSettings); "
                   "TENURE_<FIELD> in the environment and the flags below override it")
    p.add_argument("--churn-horizon-days", "--horizon-days", type=int, dest="churn_horizon_days",
                   help="churn = no order within this many days (default 90)")
    p.add_argument("--clv-horizon-days", type=int, help="predicted CLV covers this many days (default 365)")
    p.add_argument("--purchase-horizons", help="P(order within N days) for each N, comma-separated (default 7,30,90)")
    p.add_argument("--state", nargs="?", const="", metavar="DIR",
                   help="the recommendation service's state directory (--state alone: as for the services, "
                   "TENURE_STATE_DIR, else the settings file's state_dir, else state): its recorded feedback "
                   "(feedback.sqlite) joins the propensity training set")
    p.set_defaults(func=_train)

    p = sub.add_parser("feedback-report", help="click-through and conversion by position, from recorded feedback")
    p.add_argument("--state", help=STATE_HELP)
    p.add_argument("--since", help="only events at or after this date/time (ISO 8601; UTC unless it says)")
    p.add_argument("--until", help="only events before this date/time (ISO 8601; UTC unless it says)")
    p.set_defaults(func=_feedback_report)

    p = sub.add_parser("snapshot", help="refresh the serving features (same models) at a cutoff; services re-score")
    p.add_argument("--shop", default="data/shop")
    p.add_argument("--models", help=MODELS_HELP)
    p.add_argument("--at", help="cutoff date (default: the day after the last transaction + --days-after)")
    p.add_argument("--days-after", type=int, default=0)
    p.set_defaults(func=_snapshot)

    p = sub.add_parser("lookalike", help="train a lookalike model for a seed audience (ids, one per line)")
    p.add_argument("--seed-file", help="customer ids, whitespace-separated; default: top 10%% by spend")
    p.add_argument("--name", default="lookalike", help="model name in the repository")
    p.add_argument("--models", help=MODELS_HELP)
    p.set_defaults(func=_lookalike)

    p = sub.add_parser("import-onnx", help="add an ONNX model trained elsewhere to the repository")
    p.add_argument("--onnx", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--feature-names", help="file with the input's column names, whitespace-separated")
    p.add_argument("--lightgbm", metavar="MODEL.txt",
                   help="the same model's LightGBM text file: also compile it to machine code (needs the [train] "
                        "extra and ld), kept only if it gives the ONNX model's answers")
    p.add_argument("--models", help=MODELS_HELP)
    p.set_defaults(func=_import_onnx)

    p = sub.add_parser("serve", help="run one gRPC service")
    p.add_argument("service", choices=SERVICES)
    p.add_argument("--port", type=int)
    p.add_argument("--host")
    p.add_argument("--models", help=MODELS_HELP)
    p.add_argument("--state", help=STATE_HELP)
    p.add_argument("--ort-threads", type=int, help="onnxruntime threads per session (0: CPU quota / workers)")
    p.add_argument("--workers", type=int, help="processes sharing the port via SO_REUSEPORT (0: one per CPU)")
    p.add_argument("--metrics-port", type=int, help="Prometheus /metrics on this port (0: off; one per service)")
    p.add_argument("--otlp-endpoint", help="OpenTelemetry tracing: host:port of an OTLP/gRPC collector "
                   "(TENURE_OTLP_ENDPOINT; empty: off)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("demo", help="ask the running services about example customers")
    p.add_argument("--scoring", default="127.0.0.1:50051")
    p.add_argument("--recommendation", default="127.0.0.1:50052")
    p.add_argument("--segmentation", default="127.0.0.1:50053")
    p.add_argument("--models", help=MODELS_HELP + "; only used to pick example customer ids")
    p.set_defaults(func=_demo)

    p = sub.add_parser("score-file", help="stream a Parquet of customers through StreamScore into a Parquet of "
                       "scores; resumable: finished parts are kept in OUTPUT.parts/ and a rerun skips them")
    p.add_argument("--target", default="127.0.0.1:50051")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--id-column", default="customer_id")
    p.add_argument("--chunk-rows", type=int, default=10_000)
    p.add_argument("--part-chunks", type=int, default=10,
                   help="chunks per part saved in OUTPUT.parts/ (what a rerun after a failure does not score again)")
    p.add_argument("--models", help=MODELS_HELP + "; --engine dask only: what the workers load (the feature "
                   "snapshot, churn, lookalike), a path every worker can read")
    p.set_defaults(func=_score_file)

    p = sub.add_parser("health", help="exit 0 when the service at TARGET reports SERVING")
    p.add_argument("target", help="host:port")
    p.add_argument("--timeout-s", type=float, default=3.0)
    p.set_defaults(func=_health)

    p = sub.add_parser("ingest", help="send events (orders, returns, feedback) to a service's EventService from a "
                       "JSON-lines file or a Kafka topic; prints the summary and the rejected events (exit 1 if any)")
    p.add_argument("--target", required=True, help="host:port of any of the three services")
    p.add_argument("--file", metavar="EVENTS.jsonl", help="one event per line (format: tenure.client.events)")
    p.add_argument("--from-kafka", metavar="BOOTSTRAP", help="Kafka bootstrap servers (host:port[,...]); needs "
                   "the kafka extra (pip install 'tenure[kafka]'); offsets are committed after each batch is applied")
    p.add_argument("--topic", help="--from-kafka: the topic to consume")
    p.add_argument("--group", default="tenure-ingest", help="--from-kafka: consumer group (default tenure-ingest)")
    p.add_argument("--batch-events", type=int, default=1_000, help="events per IngestEvents call (at most 10,000)")
    p.set_defaults(func=_ingest)

    p = sub.add_parser("models", help="the model repository: list versions, pin, unpin, rollback, gc")
    models = p.add_subparsers(dest="action", required=True)
    m = models.add_parser("list", help="every model's versions, newest first: valid or why not, served, pinned")
    m.set_defaults(func=_models)
    m = models.add_parser("pin", help="serve VERSION of NAME instead of the newest (models/NAME/PINNED)")
    m.add_argument("name")
    m.add_argument("version", nargs="?")
    m.add_argument("--clear", action="store_true", help="unpin: serve the newest valid version again")
    m.set_defaults(func=_models)
    m = models.add_parser("unpin", help="serve the newest valid version of NAME again")
    m.add_argument("name")
    m.set_defaults(func=_models)
    m = models.add_parser("rollback", help="pin the valid version before the one served now")
    m.add_argument("name")
    m.set_defaults(func=_models)
    m = models.add_parser("gc", help="delete all but the newest --keep valid versions per model (never the "
                          "pinned or served one; broken versions and .tmp-* debris older than an hour)")
    m.add_argument("--keep", type=int, default=3)
    m.add_argument("--dry-run", action="store_true", help="print what would be deleted")
    m.set_defaults(func=_models)
    for m in models.choices.values():
        m.add_argument("--models", help=MODELS_HELP)

    p = sub.add_parser("report", help="a self-contained HTML page: every model's holdout metrics next to the "
                       "baselines, ROC / gains / calibration / spend / BG/NBD / importance plots, clusters, segments")
    p.add_argument("--models", help=MODELS_HELP)
    p.add_argument("--out", default="report.html", help="the HTML file to write (default report.html)")
    p.add_argument("--state", help=STATE_HELP + "; its segments.sqlite gives the last re-scoring's segment moves")
    p.set_defaults(func=_report)

    p = sub.add_parser("run", help="synthetic shop -> train -> serve -> demo -> stop")
    p.add_argument("--data", default="data")
    p.add_argument("--models", help=MODELS_HELP)
    p.add_argument("--online-store", metavar="URL", help="the services' online feature store (TENURE_ONLINE_STORE): "
                   "empty = one embedded store per service (the demo sends its event to each), redis://HOST:PORT = "
                   "one shared store (sent once; `make run-redis`), off")
    p.set_defaults(func=_run)

    for name in ("serve", "run"):
        sub.choices[name].add_argument(
            "--settings", metavar="FILE", help="JSON object of service settings (field names of "
            "tenure.settings.ServiceSettings, like TENURE_SETTINGS_FILE); TENURE_<FIELD> and the flags override it")
    for name in ("train", "score-file"):
        sub.choices[name].add_argument("--engine", choices=["pandas", "dask"], default="pandas",
                                       help="dask: a Parquet dataset (directory or glob, may exceed memory) on a Dask "
                                       "cluster (training.dask_engine); train: churn only; score-file: --models "
                                       "read by the workers, OUTPUT a directory of parts")
        sub.choices[name].add_argument("--scheduler", metavar="ADDRESS", help="--engine dask: the Dask scheduler "
                                       "(tcp://host:8786); default: a LocalCluster of 2 worker processes")
    for name in ("train", "snapshot", "lookalike"):
        sub.choices[name].add_argument("--progress", action=argparse.BooleanOptionalAction,
                                       help="a progress bar on stderr (default: only when stderr is a terminal)")
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", help="print the traceback of an error")
    args = parser.parse_args(argv)
    if args.debug:
        os.environ["TENURE_DEBUG"] = "1"
    import grpc

    try:
        resolve_dirs(args)
        args.func(args)
    except (TenureError, ConfigError, OSError, ValueError, grpc.RpcError, subprocess.CalledProcessError) as exc:
        # bad input, setting, file, unreachable service, a failed step: one line, exit 2 (--debug: traceback)
        if args.debug:
            raise
        print(f"tenure {args.command}: error: {error_line(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"tenure {args.command}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def version() -> str:
    """The installed distribution's version (importlib.metadata), else tenure.__version__ (a bare source tree)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("tenure")
    except PackageNotFoundError:
        from tenure import __version__

        return __version__


def resolve_dirs(args: argparse.Namespace) -> None:
    """Every command's --models and --state, where not given, as the services resolve them (in place): the
    flag > TENURE_MODELS_DIR / TENURE_STATE_DIR > the settings file (--settings, else TENURE_SETTINGS_FILE)
    > "models" / "state" (tenure.settings.storage_dirs). `train` reads feedback only when --state is given
    (--state alone: the resolved state directory). A bad value is a ConfigError; other settings are not read."""
    from tenure.settings import storage_dirs

    has_models = hasattr(args, "models")
    has_state = hasattr(args, "state") and not (args.command == "train" and args.state is None)
    if not (has_models or has_state):
        return
    models, state = storage_dirs(getattr(args, "models", None) or None,
                                 (getattr(args, "state", None) or None) if has_state else None,
                                 getattr(args, "settings", None) or None)
    if has_models:
        args.models = str(models)
    if has_state:
        args.state = str(state)


def error_line(exc: BaseException) -> str:
    """An error as one line: a gRPC status by name and details, a file error by path and reason."""
    import grpc

    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
        text = f"{exc.code().name}: {exc.details()}"
    elif isinstance(exc, subprocess.CalledProcessError):
        text = f"{' '.join(map(str, exc.cmd))} exited with {exc.returncode}"
    elif isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        text = f"{where}{exc.strerror}"
    elif isinstance(exc, FileNotFoundError):  # pyarrow's carry only the path
        text = f"{exc}: no such file or directory"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    main()
