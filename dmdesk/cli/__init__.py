"""The `dmdesk` command (DESIGN.md "CLI" contract).

- `parser`: every command and its options, each bound to its handler (`set_defaults(func=…)`);
- one module per command group, each handler `(args, config) -> exit code`: `runs` (runs, run,
  generate, proceed, train, remove, the detached `_job`), `review` (review, activate, export),
  `retrieval` (search, import, evaluate), `settings`, `window` (gui, demo, `_demo-store`);
- `render` (what is printed), `follow` (`--wait`, `--follow`, the hand-over to a detached
  process), `context` (the service context, opened late and always disposed);
- `main`: the exit-code mapping (0 success; 1 the awaited run ended failed, or an unexpected
  error; 2 usage or invalid settings; 3 refused by a rule; 4 no such run). `--json` prints one
  JSON value. No traceback reaches the user unless `--debug` is given.

Without `--wait`, `generate`, `proceed` and `train` hand the job to a detached dmdesk process
(`dmdesk _job`), which keeps the run's heartbeat; `dmdesk run ID` follows it.

The services, `dmdesk.app`, the jobs, the demo and the window are imported inside the handlers
that use them (each such import says `# late`): they load SQLAlchemy, the openai SDK, numpy or
Qt (0.3–1.2 s), which `dmdesk --help`, `dmdesk settings` and a usage error should not wait for.
"""

from dmdesk.cli.main import main

__all__ = ["main"]
