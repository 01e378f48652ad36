"""The shared training core: config files and overrides, exact resume after a crash, the metrics
log, and two gloo processes reproducing a one-process run; plus the flow port against numbers
the pre-port flow trainer produced."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from avgeo.cli import main
from avgeo.errors import ConfigError, WeightsError
from avgeo.precision import manifold
from avgeo.precision.train import FlowConfig, load_flow, train_flow
from avgeo.training import (
    MetricsLog,
    Task,
    TrainerConfig,
    dump_config,
    fit,
    load_config_file,
    read_checkpoint,
    read_metrics,
    record,
    resolve,
    shard,
    tensorboard_available,
)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ---------------------------------------------------------------- a tiny task

class Crash(RuntimeError):
    pass


class Regress(Task):
    """Noisy linear regression by a small MLP; data order and noise come from the task's own
    generator, dropout from the global RNG: both must be restored for an exact resume."""

    def __init__(self, dropout: float = 0.0, crash_at: int = 0, n: int = 96, bs: int = 16):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 5, generator=g)
        self.y = self.x @ torch.randn(5, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
        self.g = torch.Generator().manual_seed(7)
        self.n, self.bs, self.dropout, self.crash_at = n, bs, dropout, crash_at
        self.losses: list[float] = []

    def build(self, ctx):
        return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Dropout(self.dropout),
                             nn.Linear(16, 1))

    def configure_optimizer(self, model, ctx):
        return torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.01)

    def configure_scheduler(self, optimizer, ctx):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1.0 + 0.1 * s))

    def batches(self, epoch, env):
        perm = torch.randperm(self.n, generator=self.g)
        for b in range(self.n // self.bs):
            idx = perm[b * self.bs:(b + 1) * self.bs]
            noise = 0.01 * torch.randn(self.bs, 1, generator=self.g)
            yield shard(self.x[idx], env), shard(self.y[idx] + noise, env)

    def loss(self, model, batch):
        x, y = batch
        err = model(x) - y
        loss = err.pow(2).mean()
        self.losses.append(float(loss.detach()))
        return loss, {"abs_err": err.abs().mean()}

    def after_step(self, model, step):
        if step == self.crash_at:
            raise Crash(f"simulated crash after step {step}")

    def data_state(self):
        return self.g.get_state()

    def load_data_state(self, state):
        self.g.set_state(state)


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _no_wall(rows):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


# ---------------------------------------------------------------- config

@pytest.mark.parametrize("suffix", [".toml", ".json", ".yaml"])
def test_config_round_trip_and_overrides(tmp_path, suffix):
    flow = FlowConfig(hidden=32, cond_columns=["a", "b"], lr=1e-3, base="vmf_mixture",
                      base_components=4)
    run = TrainerConfig(device="auto", max_seconds=1.5, tensorboard=False, run_dir="r",
                        log_every=3)
    rec = record(flow=flow, run=run)
    path = dump_config(tmp_path / f"c{suffix}", rec)
    assert load_config_file(path)["schema_version"] == 1
    sections = {"flow": FlowConfig, "run": TrainerConfig}
    built, rec2, text = resolve(sections, file=path)
    assert built["flow"] == flow and built["run"] == run and rec2 == rec
    assert text == path.read_text()
    # The file beats CLI defaults, explicit flags beat the file, --set beats all; strings are
    # typed by the field.
    built, _, _ = resolve(sections, defaults={"flow": {"hidden": 8, "depth": 9}},
                          explicit={"flow": {"hidden": 64}}, file=path,
                          sets=["flow.cond_columns=x,y", "run.tensorboard=true",
                                "flow.lr=5e-4", "run.max_steps=12"])
    f, r = built["flow"], built["run"]
    assert (f.hidden, f.depth, f.cond_columns, f.lr) == (64, 4, ["x", "y"], 5e-4)
    assert r.tensorboard is True and r.max_steps == 12 and r.log_every == 3


def test_config_errors(tmp_path):
    sections = {"run": TrainerConfig}
    with pytest.raises(ConfigError, match="unknown setting 'log_evry'") as exc:
        resolve(sections, sets=["run.log_evry=3"])
    assert "did you mean 'log_every'" in exc.value.hint
    with pytest.raises(ConfigError, match="not an integer"):
        resolve(sections, sets=["run.log_every=ten"])
    with pytest.raises(ConfigError, match="section"):
        resolve(sections, sets=["flow.hidden=3"])
    with pytest.raises(ConfigError):
        resolve(sections, sets=["log_every=3"])
    newer = tmp_path / "n.toml"
    newer.write_text("schema_version = 99\n[run]\nseed = 1\n")
    with pytest.raises(ConfigError, match="schema_version"):
        resolve(sections, file=newer)
    broken = tmp_path / "b.toml"
    broken.write_text("[run\nseed = 1\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        resolve(sections, file=broken)
    with pytest.raises(ConfigError):
        resolve(sections, file=tmp_path / "missing.toml")
    # YAML 1.1 reads 1e-3 as a string: the float field still gets a float.
    y = tmp_path / "y.yaml"
    y.write_text("run:\n  max_seconds: 1e-3\n")
    assert resolve(sections, file=y)[0]["run"].max_seconds == pytest.approx(1e-3)


def _run_cli(args):
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code


def test_cli_config_precedence(tmp_path):
    cfg = tmp_path / "flow.toml"
    cfg.write_text("schema_version = 1\n[flow]\nhidden = 16\ndepth = 1\nepochs = 2\n"
                   "[run]\nlog_every = 7\n")
    saved = tmp_path / "resolved.json"
    assert _run_cli(["train", "flow", str(tmp_path / "pts.csv"), "--config", str(cfg),
                     "--epochs", "5", "--set", "flow.n_freq=12",
                     "--save-config", str(saved)]) in (0, None)
    rec = json.loads(saved.read_text())
    assert rec["flow"]["epochs"] == 5  # the flag given on the command line
    assert rec["flow"]["hidden"] == 16 and rec["flow"]["depth"] == 1  # the file
    assert rec["flow"]["n_freq"] == 12 and rec["run"]["log_every"] == 7
    assert rec["flow"]["lr"] == 2e-3  # neither: the CLI default
    # A [run] setting the flow takes from its own section is refused, not ignored.
    assert _run_cli(["train", "flow", "x.csv", "--set", "run.seed=3"]) == 2


# ---------------------------------------------------------------- resume and metrics

@pytest.mark.parametrize("crash_at", [10, 13])
def test_resume_after_crash_equals_straight_run(tmp_path, crash_at):
    # 6 steps per epoch, checkpoints every 4 steps: crashing after step 10 resumes from the
    # checkpoint 2 batches into epoch 2; after 13, from the one at the very end of epoch 2.
    def cfg(d):
        return TrainerConfig(seed=5, epochs=3, log_every=2, checkpoint_every=4,
                             run_dir=str(tmp_path / d), tensorboard=False)

    straight_task = Regress(dropout=0.2)
    straight = fit(straight_task, cfg("a"), log=lambda s: None)
    assert straight.step == 18 and straight.epochs_done == 3

    with pytest.raises(Crash):
        fit(Regress(dropout=0.2, crash_at=crash_at), cfg("b"), log=lambda s: None)
    ckpt = tmp_path / "b" / "checkpoint.pt"
    saved = read_checkpoint(ckpt)["trainer"]
    assert saved["step"] == 4 * (crash_at // 4)
    resumed_task = Regress(dropout=0.2)
    resumed = fit(resumed_task, cfg("b"), resume=ckpt, log=lambda s: None)
    assert resumed.step == 18 and resumed.epochs_done == 3
    a, b = _params(straight.model), _params(resumed.model)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # The resumed process trained exactly the straight run's remaining steps.
    assert resumed_task.losses == straight_task.losses[saved["step"]:]
    assert resumed.history == straight.history
    # Rows the crashed run logged past its checkpoint are gone; the log reads as one run.
    assert _no_wall(read_metrics(tmp_path / "b")) == _no_wall(read_metrics(tmp_path / "a"))
    assert json.loads((tmp_path / "b" / "config.json").read_text())["run"]["seed"] == 5


def test_metrics_csv_content(tmp_path):
    task = Regress()
    res = fit(task, TrainerConfig(seed=1, epochs=2, log_every=4, run_dir=str(tmp_path),
                                  tensorboard=False), log=lambda s: None)
    rows = read_metrics(tmp_path)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == ["step", "wall_s", "loss", "abs_err", "lr", "epoch"]
    # Rows every 4 steps, then the remainder at the end (12 steps in all).
    assert [r["step"] for r in rows] == [4, 8, 12]
    for r, lo in zip(rows, (0, 4, 8), strict=True):
        assert r["loss"] == pytest.approx(sum(task.losses[lo:lo + 4]) / 4, rel=1e-12)
    assert [r["epoch"] for r in rows] == [1, 2, 2]
    walls = [r["wall_s"] for r in rows]
    assert walls == sorted(walls) and walls[0] >= 0
    # lr is the rate used by the row's last step: 0.05 / (1 + 0.1 * (step - 1)).
    assert rows[-1]["lr"] == pytest.approx(0.05 / (1 + 0.1 * 11))
    assert res.history[0]["loss"] == pytest.approx(sum(task.losses[:6]) / 6, rel=1e-12)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["schema_version"] == 1 and cfg["run"]["log_every"] == 4
    assert read_checkpoint(tmp_path / "checkpoint.pt")["trainer"]["config"] == cfg


def test_metrics_log_widens_and_truncates(tmp_path):
    with MetricsLog(tmp_path, tensorboard=False) as m:
        m.log(1, loss=1.0)
        m.log(2, loss=0.5, extra=3.0)
        m.log(3, loss=0.25)
    rows = read_metrics(tmp_path)
    assert [r.get("extra") for r in rows] == [None, 3.0, None]
    with MetricsLog(tmp_path, tensorboard=False, resume_step=2) as m:
        m.log(3, loss=0.3)
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(1, 1.0), (2, 0.5),
                                                                      (3, 0.3)]


@pytest.mark.skipif(not tensorboard_available(), reason="tensorboard is not installed")
def test_tensorboard_events(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def scalars():
        ea = EventAccumulator(str(tmp_path))
        ea.Reload()
        return ea.Scalars("loss")

    cfg = TrainerConfig(epochs=1, log_every=1, checkpoint_every=2, run_dir=str(tmp_path))
    fit(Regress(), cfg, log=lambda s: None)
    fit(Regress(), cfg, log=lambda s: None)  # a fresh run in the same folder replaces the log
    assert [e.step for e in scalars()] == [1, 2, 3, 4, 5, 6]
    csv_loss = [r["loss"] for r in read_metrics(tmp_path)]
    assert [e.value for e in scalars()] == pytest.approx(csv_loss, rel=1e-6)
    # A crash after step 6 (step 5 logged, checkpoint at 4): resuming purges step 5.
    with pytest.raises(Crash):
        fit(Regress(crash_at=6), cfg, log=lambda s: None)
    fit(Regress(), cfg, resume=tmp_path / "checkpoint.pt", log=lambda s: None)
    assert [e.step for e in scalars()] == [1, 2, 3, 4, 5, 6]
    assert [e.value for e in scalars()] == pytest.approx(csv_loss, rel=1e-6)


def test_bad_resume_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError):
        fit(Regress(), TrainerConfig(), resume=junk, log=lambda s: None)
    torch.save({"kind": "something else"}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="trainer state"):
        fit(Regress(), TrainerConfig(), resume=tmp_path / "other.pt", log=lambda s: None)
    with pytest.raises(ConfigError):
        fit(Regress(), TrainerConfig(device="tpu"), log=lambda s: None)


# ---------------------------------------------------------------- DDP

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_cfg(run_dir: str) -> TrainerConfig:
    return TrainerConfig(seed=2, epochs=2, log_every=3, run_dir=run_dir, tensorboard=False)


def _rank_main(rank: int, world: int, port: int, out: str, run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        res = fit(Regress(), _ddp_cfg(run_dir), log=lambda s: None)
        if rank == 0:
            torch.save(_params(res.model), out)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def test_two_gloo_processes_match_one(tmp_path):
    single = fit(Regress(), _ddp_cfg(str(tmp_path / "one")), log=lambda s: None)
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_rank_main, args=(2, _free_port(), out, str(tmp_path / "two")), nprocs=2,
             join=True)
    ddp = torch.load(out)
    ref = _params(single.model)
    assert ddp.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(ddp[k], ref[k], rtol=1e-5, atol=1e-6, msg=k)
    # The logged loss is the global-batch mean (averaged over ranks), as in one process.
    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["step"] for r in two] == [r["step"] for r in one]
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-5)
    assert read_checkpoint(tmp_path / "two" / "checkpoint.pt")["trainer"]["world"] == 2


# ---------------------------------------------------------------- the flow port

FLOW = dict(hidden=32, depth=2, n_freq=16, batch_size=64, epochs=3, warmup_steps=2, seed=3)


def _sphere(n: int = 256) -> torch.Tensor:
    return manifold.uniform(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_flow_port_matches_pre_port_numbers():
    # Printed by the pre-port train_flow (commit e15c0a7) for this config, one thread. The
    # weight sum to 1e-6 relative: another CPU's float kernels move its last digits.
    lines: list[str] = []
    model = train_flow(_sphere(), cfg=FlowConfig(**FLOW), log=lines.append)
    assert [ln.rsplit(" ", 1)[0] for ln in lines] == [
        "epoch 1/3 step 4 loss 2.8611 lr 1.81e-03", "epoch 2/3 step 8 loss 2.7685 lr 6.91e-04",
        "epoch 3/3 step 12 loss 2.9890 lr 0.00e+00"]
    total = sum(float(v.double().sum()) for v in model.net.state_dict().values())
    assert total == pytest.approx(43.99226808846197, rel=1e-6)


def test_flow_resume_mid_epoch_equals_straight_run(tmp_path):
    cfg = dict(FLOW, hidden=16, depth=1)
    straight = train_flow(_sphere(), cfg=FlowConfig(**cfg), log=lambda s: None)
    out = tmp_path / "f.pt"

    def crash_at_epoch_2(line: str) -> None:
        if line.startswith("epoch 2/"):
            raise Crash(line)

    with pytest.raises(Crash):  # 4 steps per epoch: the step-5 checkpoint is mid epoch 2
        train_flow(_sphere(), cfg=FlowConfig(**cfg), out=out, checkpoint_every=5,
                   run_dir=tmp_path / "run", tensorboard=False, log=crash_at_epoch_2)
    assert read_checkpoint(str(out) + ".ckpt")["trainer"]["batch_in_epoch"] == 1
    # The checkpoint also loads as a model (its EMA weights).
    assert load_flow(str(out) + ".ckpt")[0].net.state_dict().keys() == \
        straight.net.state_dict().keys()
    resumed = train_flow(_sphere(), cfg=FlowConfig(**cfg), out=out,
                         resume=str(out) + ".ckpt", run_dir=tmp_path / "run",
                         tensorboard=False, log=lambda s: None)
    a, b = straight.net.state_dict(), resumed.net.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    info = torch.load(out, weights_only=True)["info"]
    assert info == {"steps": 12, "epochs_done": 3}
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [10, 12]


def test_torchrun_cli_two_processes_match_one(tmp_path):
    # The real launcher path: torchrun sets RANK/WORLD_SIZE, the CLI joins a gloo group.
    import subprocess
    import sys

    import pandas as pd

    lat, lon = manifold.to_latlon(_sphere(400))
    csv = tmp_path / "pts.csv"
    pd.DataFrame({"lat": lat.numpy(), "lon": lon.numpy()}).to_csv(csv, index=False)
    args = ["train", "flow", str(csv), "--hidden", "16", "--depth", "1", "--batch-size",
            "100", "--epochs", "2", "--log-every", "2", "--set", "run.tensorboard=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", "-m", "avgeo", *args, "--out",
                           str(tmp_path / "two.pt")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-3000:]
    assert proc.stdout.count(str(tmp_path / "two.pt")) == 1  # rank 0 alone prints
    assert _run_cli([*args, "--out", str(tmp_path / "one.pt")]) in (0, None)
    one = torch.load(tmp_path / "one.pt", weights_only=True)["state_dict"]
    two = torch.load(tmp_path / "two.pt", weights_only=True)["state_dict"]
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-5, atol=1e-6, msg=k)
    r1, r2 = read_metrics(tmp_path / "one.run"), read_metrics(tmp_path / "two.run")
    assert [r["step"] for r in r2] == [r["step"] for r in r1] == [2, 4, 6, 8]
    assert [r["loss"] for r in r2] == pytest.approx([r["loss"] for r in r1], rel=1e-5)
    ckpt = read_checkpoint(str(tmp_path / "two.pt") + ".ckpt")["trainer"]
    assert ckpt["world"] == 2 and ckpt["config"]["flow"]["hidden"] == 16
