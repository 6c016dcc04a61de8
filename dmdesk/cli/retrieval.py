"""The commands on the store: `search`, `import`, `evaluate`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dmdesk.cli.context import started
from dmdesk.cli.render import ImportProgress, print_json
from dmdesk.config import DmdeskConfig
from dmdesk.deepmemory import evalset
from dmdesk.domain.errors import EXIT_OK, InvalidSettings

if TYPE_CHECKING:
    from dmdesk.services.context import ServiceContext


def search(args: argparse.Namespace, config: DmdeskConfig) -> int:
    from dmdesk.services import retrieval  # late: numpy, the embedder

    with started(config) as ctx:
        hits = retrieval.search(ctx, args.query, args.k, args.deep_memory)
    if args.json:
        print_json([{"id": h.id, "score": h.score, "text": h.text} for h in hits])
    else:
        for h in hits:
            text = " ".join(h.text.split())
            print(f"{h.score:7.4f}  {h.id}  {text[:100]}")
    return EXIT_OK


def import_corpus(args: argparse.Namespace, config: DmdeskConfig) -> int:
    from dmdesk.services import retrieval  # late: numpy, the embedder

    with started(config) as ctx:
        counts = retrieval.import_corpus(ctx, Path(args.corpus), ImportProgress())
    print(
        f"Imported {counts['imported']} documents into {config.vector_store_path}"
        f" ({counts['skipped']} already there)."
    )
    return EXIT_OK


def evaluate(args: argparse.Namespace, config: DmdeskConfig) -> int:
    from dmdesk.services import retrieval  # late: numpy, the embedder

    with started(config) as ctx:
        ks = _parse_ks(args.k)
        if args.forget:
            gone = evalset.remove(ctx.config.data_dir, ctx.config.vector_store_path or "")
            print("Evaluation set removed." if gone else "No evaluation set was saved.")
            return EXIT_OK
        questions, relevant, source = _labelled(args, ctx)
        result = retrieval.evaluate(
            ctx, questions, relevant, ks, save_as=source if args.save else None
        )
    if "saved" in result:
        print(
            f"Saved as this store's evaluation set: {result['saved']}. Every training run "
            "is now judged on it too.",
            file=sys.stderr if args.json else sys.stdout,
        )
    if args.json:
        print_json({k: v for k, v in result.items() if k in ("without", "with")})
    else:
        for name in ("without", "with"):
            if name in result:
                figures = "  ".join(
                    f"{k} {v:.3f}" for k, v in result[name].items() if k != "queries"
                )
                print(f"{name + ' Deep Memory':<22} {figures}")
        if "with" not in result:
            print("(no Deep Memory is active for this store: train a run to compare)")
    return EXIT_OK


def _parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise InvalidSettings(f"-k takes whole numbers separated by commas, not {text!r}") from None
    if not ks or ks[0] < 1:
        raise InvalidSettings("-k takes positive whole numbers, e.g. 1,3,5,10")
    return ks


def _labelled(
    args: argparse.Namespace, ctx: ServiceContext
) -> tuple[list[str], list[list[str]], str]:
    """The labelled questions `dmdesk evaluate` measures — the files given, else the store's
    saved evaluation set — as (questions, relevant chunk ids, source)."""
    from dmdesk.services import retrieval  # late: the services

    if args.csv and args.queries:
        raise InvalidSettings("Give either QUERIES.jsonl QRELS.tsv or --csv FILE, not both.")
    if args.queries and not args.qrels:
        raise InvalidSettings("QUERIES.jsonl needs its QRELS.tsv (query-id, corpus-id, score).")
    if args.csv:
        return *retrieval.read_question_csv(Path(args.csv)), str(args.csv)
    if args.queries:
        return *retrieval.read_labelled(Path(args.queries), Path(args.qrels)), str(args.queries)
    if args.save:
        raise InvalidSettings("--save needs the questions: QUERIES.jsonl QRELS.tsv or --csv FILE.")
    saved = retrieval.saved_evaluation_set(ctx)
    if saved is None:
        raise InvalidSettings(
            "No evaluation set is saved for this store: give QUERIES.jsonl QRELS.tsv or "
            "--csv FILE (add --save to keep them as the store's evaluation set)."
        )
    return saved.questions, saved.relevant, saved.source
