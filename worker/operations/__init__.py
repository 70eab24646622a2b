"""One module per kind of durable operation, over the core in `worker/_core.py`:

- `step`: `ctx.step` (retries, timeouts, attempts);
- `sleep`: `ctx.sleep`, `ctx.sleep_until`;
- `signal`: `ctx.wait_for_signal`;
- `child`: `ctx.run_in_child_context`;
- `batch`: `ctx.parallel`, `ctx.map`, `CompletionConfig`, `BatchResult`;
- `patch`: `ctx.patched`, `ctx.deprecate_patch` (versioning by marker);
- `continue_as_new`: `ctx.continue_as_new` (a fresh history, same run id).
"""
