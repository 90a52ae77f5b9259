"""The `peftlab` command line.

    peftlab run EXP.yaml [--methods lora,ia3] [--max-steps N] [--max-train-examples N] ...
    peftlab leaderboard EXPERIMENT [--format table|json|csv]
    peftlab experiments
    peftlab methods [NAME]
    peftlab show EXPERIMENT RUN
    peftlab predict EXPERIMENT [RUN] --input new.jsonl --output out.jsonl [--runs a,b]
    peftlab evaluate EXPERIMENT [RUN] --test labelled.jsonl [--name NAME] [--runs a,b]
    peftlab report EXPERIMENT [-o report.html] [--max-memory-mb N] [--png-dir DIR] ...
    peftlab compare EXP_A EXP_B [--runs 3,7] [-o compare.html]
    peftlab serve [--port 8000] [--executor ray] ...
    peftlab export EXPERIMENT RUN -o DIR [--merge | --as-lora RANK]

`parser.py` defines the arguments, `commands.py` what each command does; `main` turns the
library's errors into one `error:` line and an exit code (2: bad input, 130: interrupted).
"""

from __future__ import annotations

import os
import sqlite3
import sys

from peftlab.cli.parser import build_parser
from peftlab.errors import PeftlabError

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        code = args.fn(args)
        sys.stdout.flush()  # here, so a closed pipe is caught below rather than at interpreter exit
        return code
    except PeftlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `peftlab leaderboard X | head`: the reader left; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as e:  # an output path or the store's folder: one line, not a traceback
        where = e.filename or "file"
        print(f"error: {where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except sqlite3.Error as e:
        print(f"error: the store's database: {e}", file=sys.stderr)
        return 2
