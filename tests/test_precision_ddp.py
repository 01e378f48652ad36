"""Two processes with DDP (gloo, CPU) train the flow to the same weights as one process."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from avgeo.precision import manifold
from avgeo.precision.train import FlowConfig, train_flow

CFG = dict(hidden=32, depth=2, n_freq=16, batch_size=64, epochs=3, warmup_steps=2, seed=3)


def _data() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return manifold.uniform(256, generator=g, dtype=torch.float64)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        model = train_flow(_data(), cfg=FlowConfig(**CFG), log=lambda _m: None)
        if rank == 0:
            torch.save(model.net.state_dict(), out)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    torch.set_num_threads(1)
    single = train_flow(_data(), cfg=FlowConfig(**CFG), log=lambda _m: None).net.state_dict()
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_rank_main, args=(2, _free_port(), out), nprocs=2, join=True)
    ddp = torch.load(out)
    assert single.keys() == ddp.keys()
    for k in single:
        torch.testing.assert_close(ddp[k], single[k], rtol=1e-4, atol=1e-5, msg=k)
