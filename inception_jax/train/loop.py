"""The host training loop: `train_and_evaluate(config, workdir, pipeline=None) -> summary`.

The data comes from `pipeline` (default `inception_jax.data.pipeline`, reading `config.data`).

Resume order: the workdir's newest good checkpoint (state and data order), else a fresh init.
Non-finite steps: the step flags them and records the first one in the state; the host checks at
every logging and checkpoint step, naming the step and the first non-finite quantity. Policy 'stop'
ends the run with `NonFiniteError`, keeping the last good checkpoint; 'skip' leaves the update out
and counts it (`skipped_steps`). SIGTERM or SIGINT saves a checkpoint and returns cleanly. The
workdir is claimed first (`workdir.claim`: a lock, the config check) and nothing is written in it
before the config is validated.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from inception_jax.train import checkpoint as checkpoint_lib
from inception_jax.train import config_check, distributed, init_from, setup, sharding
from inception_jax.train import metrics as metrics_lib
from inception_jax.train import metrics_schema as schema
from inception_jax.train import step as step_lib
from inception_jax.train import workdir as workdir_lib
from inception_jax.train.evaluate import evaluate
from inception_jax.train.input_pipeline import InputPipeline, default_pipeline
from inception_jax.train.state import NONFINITE_NAMES

StepHook = Callable[[int, dict[str, float]], str | None]
HookFactory = Callable[[Any, str], StepHook | None]


class NonFiniteError(FloatingPointError):
    """Training produced a NaN/Inf under `nonfinite_policy='stop'`."""


@contextlib.contextmanager
def _sigterm_flag():
    """SIGTERM and SIGINT (Ctrl-C) set the flag (`flag.signal_name` says which); a second SIGINT
    raises KeyboardInterrupt, for a user who does not want to wait for the checkpoint."""
    flag = threading.Event()
    flag.signal_name = None
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if signum == signal.SIGINT and flag.is_set():
            raise KeyboardInterrupt
        flag.signal_name = signal.Signals(signum).name
        flag.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _any_process(flag: bool) -> bool:
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def train_and_evaluate(
    config: Any,
    workdir: str,
    step_hooks: Sequence[StepHook] = (),
    allow_config_change: bool = False,
    hook_factories: Sequence[HookFactory] = (),
    pipeline: InputPipeline | None = None,
    timeouts: distributed.Timeouts | None = None,
) -> dict[str, Any]:
    """Trains and evaluates as `config` says, recording everything in `workdir`.

    Args:
        config: the experiment config (see `inception_jax/train/config_base.py`).
        workdir: run directory: checkpoints, `metrics.jsonl`, TensorBoard, `config.json`,
            `summary.json`. An existing run there is resumed.
        step_hooks: callables `(step, metrics) -> reason or None` run at every logged step; a
            returned reason stops the run after a checkpoint (used for block-death detection).
        allow_config_change: continue a run whose stored config differs in training-relevant
            fields (recorded in `config_history.jsonl`; see `inception_jax/train/workdir.py`).
        hook_factories: callables `(config, workdir) -> hook or None`, called once the run has
            resumed (its metrics file truncated to the restored step), for hooks that replay
            the run's history, e.g. `inception_jax.analysis.death.DeathDetector.for_run`
            (`inception_jax.experiment.train_and_evaluate` plugs it in). A hook with a
            `summary(nonfinite_step, nonfinite_what)` method adds its fields to `summary.json`.
        pipeline: where the training and eval batches come from; default the real input
            pipeline, `inception_jax.data.pipeline`, which reads `config.data` (tests pass a
            synthetic one).
        timeouts: a multi-process run's `distributed.Timeouts` (those
            `distributed.initialize` returned); default `distributed.Timeouts()`.

    Returns:
        The summary written to `summary.json`: `status` ('completed', 'preempted' or 'stopped'),
        `step`, eval `top1`/`top5`/`loss`/`num_examples`, `train_time_s`, `images_per_sec`.
        Hooks with a `summary` method add theirs (the death detector: `died`, `death_step`,
        `criterion`, ...).

    Raises:
        ValueError: an invalid config field (named), before anything is written.
        WorkdirError: the workdir is in use, or holds a run made with another config.
        NonFiniteError: a non-finite step under `nonfinite_policy='stop'`.
    """
    config_check.validate_config(config, jax.device_count())
    pipeline = pipeline or default_pipeline()
    info = pipeline.dataset_info(config.data)
    config_check.validate_with_dataset(config, info)
    exp = setup.build_experiment(config, info=info)
    with workdir_lib.claim(config, workdir, allow_config_change, exp.total_steps) as claim:
        if claim.finished is not None:
            _report_finished(workdir, claim.finished)
            return claim.finished
        return _train(config, workdir, exp, claim, pipeline, timeouts, step_hooks, hook_factories)


def _report_finished(workdir: str, summary: dict[str, Any]) -> None:
    if jax.process_index() == 0:
        print(
            f"The run in {workdir} has already ended (status {summary.get('status')!r} at step "
            f"{summary.get('step')}); nothing was changed. Its summary.json:\n"
            f"{json.dumps(summary, indent=2)}\nTo evaluate it again: --mode=eval.",
            flush=True,
        )


def _train(
    config: Any,
    workdir: str,
    exp: setup.Experiment,
    claim: workdir_lib.Claim,
    pipeline: InputPipeline,
    timeouts: distributed.Timeouts | None,
    step_hooks: Sequence[StepHook],
    hook_factories: Sequence[HookFactory],
) -> dict[str, Any]:
    mesh, t = exp.mesh, config.train
    ckpt = checkpoint_lib.Checkpointer(workdir, keep=t.keep_checkpoints)
    state, data_state, start = ckpt.restore(exp.abstract_state(config.seed), mesh)
    if state is None:
        state, start = exp.init_state(jax.random.PRNGKey(config.seed)), 0
        state = init_from.init_from_config(state, config, mesh)
    state = exp.with_config_hparams(state)
    train_iter = pipeline.create_train_iterator(
        config.data,
        t.batch_size,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    if data_state is not None:
        train_iter.set_state(data_state)
    claim.record_start(start)  # Once everything that can refuse the resumed state has run.

    train_step = step_lib.make_train_step(exp.model, exp.tx, exp.schedule, config, mesh)
    stats_step = None
    if t.stats_every_steps:
        stats_step = step_lib.make_train_step(
            exp.model, exp.tx, exp.schedule, config, mesh, stats=True
        )
    eval_step = step_lib.make_eval_step(exp.model, config, mesh)
    # Several processes: aligned compiles, watchdog. The barriers are this run's: its workdir and
    # start step (every process has the same).
    guard = distributed.StepGuard.for_run(timeouts, f"{workdir}@{start}")
    if guard is not None:
        train_step, stats_step, eval_step = guard.wrap(train_step, stats_step, eval_step)
    writer = metrics_lib.MetricWriter(
        workdir, start, exp.total_steps, t.progress_bar, batch_size=t.batch_size
    )
    writer.log(metrics_lib.startup_message(config, exp, state, mesh, start, workdir))

    made = (make(config, workdir) for make in hook_factories)
    step_hooks = (*step_hooks, *(hook for hook in made if hook is not None))
    run = _Run(config, exp, state, start, train_iter, writer, step_hooks, pipeline)
    summary: dict[str, Any] = {}
    try:
        with _sigterm_flag() as sigterm:
            run.loop(train_step, stats_step, eval_step, ckpt, sigterm)
            ckpt.save(run.step, run.state, train_iter.get_state())
            ckpt.wait()
            summary = {"status": run.status, "step": run.step}
            if run.status == "preempted":
                summary["signal"] = sigterm.signal_name or "SIGTERM"
                writer.log(
                    f"{summary['signal']} received: saved a checkpoint at step {run.step} in "
                    f"{ckpt.directory}; rerun the same command to resume."
                )
            else:
                if run.last_eval_step != run.step:
                    final_eval = evaluate(eval_step, run.state, config, mesh, pipeline)
                    summary.update(final_eval)
                    writer.write(run.step, final_eval, split=schema.EVAL)
                else:
                    summary.update(run.last_eval)
    except NonFiniteError as e:
        summary = {"status": "nonfinite", "step": run.step, "error": str(e)}
        raise
    except BaseException as e:  # A bug or a second Ctrl-C: the summary still says so.
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        summary = {"status": status, "step": run.step, "error": f"{type(e).__name__}: {e}"}
        raise
    finally:
        if guard is not None:
            guard.stop()
        writer.close()
        ckpt.close()
        summary.update(
            stop_reason=run.reason,
            skipped_steps=int(run.state.skipped_steps),
            train_time_s=run.train_time,
            # Steady state (compiling and evaluating steps left out) where measured.
            images_per_sec=writer.images_per_sec() or run.images / max(run.train_time, 1e-9),
            **writer.throughput.timing(),
            model=config.model.name,
            dataset=config.data.name,
        )
        bad, what = int(run.state.nonfinite_step), int(run.state.nonfinite_what)
        for hook in step_hooks:
            if hasattr(hook, "summary"):
                summary.update(hook.summary(bad, NONFINITE_NAMES[what]))
        metrics_lib.write_json(f"{workdir}/summary.json", summary)
    if "top1" in summary:
        writer.log(
            f"Done at step {run.step}: held-out top-1 {summary['top1']:.4f} "
            f"({summary['num_examples']} examples), {run.train_time:.0f} s training, "
            f"{summary['images_per_sec']:.0f} images/s"
        )
    return summary


class _Run:
    """Mutable bookkeeping of one training loop."""

    def __init__(self, config, exp, state, start, train_iter, writer, step_hooks, pipeline):
        self.config, self.exp, self.state, self.step = config, exp, state, start
        self.train_iter, self.writer, self.step_hooks = train_iter, writer, step_hooks
        self.pipeline = pipeline
        self.status, self.reason = "completed", None
        self.train_time, self.images, self.last_skipped = 0.0, 0, 0
        self.last_eval_step, self.last_eval = None, {}

    def loop(self, train_step, stats_step, eval_step, ckpt, sigterm) -> None:
        t, mesh = self.config.train, self.exp.mesh
        multi = jax.process_count() > 1
        interval_start, interval_images = time.perf_counter(), 0
        while self.step < self.exp.total_steps:
            if not multi and sigterm.is_set():
                self.status = "preempted"
                return
            tic = time.perf_counter()
            batch = sharding.shard_batch(next(self.train_iter), mesh)
            with_stats = stats_step is not None and (self.step + 1) % t.stats_every_steps == 0
            self.state, m = (stats_step if with_stats else train_step)(self.state, batch)
            self.step += 1
            step = self.step
            self.images += t.batch_size
            interval_images += t.batch_size
            log_now = step % t.log_every_steps == 0 or step == self.exp.total_steps or with_stats
            ckpt_now = bool(t.checkpoint_every_steps) and step % t.checkpoint_every_steps == 0
            if log_now:
                m = jax.device_get(m)
                now = time.perf_counter()
                m[schema.IMAGES_PER_SEC] = interval_images / max(now - interval_start, 1e-9)
                m["epoch"] = step / self.exp.steps_per_epoch
                self.writer.write(step, m)
                interval_start, interval_images = now, 0
                flat = schema.flatten_metrics(m)
                for hook in self.step_hooks:
                    self.reason = self.reason or hook(step, flat)
            if log_now or ckpt_now:  # After logging, so metrics.jsonl shows the bad step.
                self._check_nonfinite()
            self.train_time += time.perf_counter() - tic
            if ckpt_now:
                ckpt.save(step, self.state, self.train_iter.get_state())
            if t.eval_every_steps and step % t.eval_every_steps == 0:
                self.last_eval = evaluate(eval_step, self.state, self.config, mesh, self.pipeline)
                self.last_eval_step = step
                self.writer.write(step, self.last_eval, split=schema.EVAL)
                interval_start = time.perf_counter()
            self.writer.advance(step)
            if self.reason is not None:
                self.status = "stopped"
                self.writer.log(f"Stopping at step {step}: {self.reason}")
                return
            if multi and log_now and _any_process(sigterm.is_set()):
                self.status = "preempted"
                return

    def _check_nonfinite(self) -> None:
        """Logs newly skipped updates; raises `NonFiniteError` under policy 'stop'."""
        skipped = int(self.state.skipped_steps)
        if skipped > self.last_skipped:
            self.writer.log(
                f"step {self.step}: {skipped - self.last_skipped} non-finite update(s) skipped "
                f"({skipped} in total)"
            )
            self.last_skipped = skipped
        bad_step = int(self.state.nonfinite_step)
        if bad_step < 0:
            return
        what = NONFINITE_NAMES[int(self.state.nonfinite_what)]
        if self.config.train.nonfinite_policy == "stop":
            message = (
                f"Non-finite {what} at step {bad_step} (nonfinite_policy='stop'); the last good "
                "checkpoint is kept. Lower the learning rate or set "
                "--config.train.nonfinite_policy=skip."
            )
            self.writer.log(message)
            raise NonFiniteError(message)
        logging.warning("First non-finite %s at step %d (skipped).", what, bad_step)
