"""ssmlib.training.fit on a task small enough to check by hand: learn y = 3x."""
import pytest
import torch

from ssmlib.training import evaluate, fit


class Line:
    """x ~ N(0, 1), y = 3x; scored by MSE and by the fraction within 0.1."""

    def sample(self, batch, generator, device, dtype):
        x = torch.randn(batch, 1, generator=generator, dtype=dtype).to(device)
        return x, 3 * x

    def loss(self, pred, y):
        return torch.mean((pred - y) ** 2)

    def metrics(self, pred, y):
        return {"mse": self.loss(pred, y).item(), "close": ((pred - y).abs() < 0.1).float().mean().item()}


def test_fit_learns_and_records_every_metric():
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.9)
    curve = fit(model, Line(), opt, 40, sched=sched, batch_size=16, eval_every=15, eval_size=64)
    assert curve["step"] == list(range(1, 41)) and len(curve["loss"]) == 40
    assert curve["eval_step"] == [15, 30, 40]                        # every 15 steps, and at the end
    assert len(curve["eval_mse"]) == len(curve["eval_close"]) == 3
    assert curve["final_mse"] == curve["eval_mse"][-1] < 1e-2 and curve["final_close"] > 0.8
    assert curve["eval_mse"][-1] < curve["eval_mse"][0] and abs(model.weight.item() - 3) < 0.1
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.9**4)   # the scheduler stepped 40 times
    assert curve["steps_done"] == 40 and not curve["stopped_early"]


def test_time_limit_stops_and_still_evaluates():
    model = torch.nn.Linear(1, 1, bias=False)
    curve = fit(model, Line(), torch.optim.SGD(model.parameters(), lr=0.1), 10_000, time_limit_s=0.0,
                eval_size=8)
    assert curve["stopped_early"] and curve["steps_done"] == 1 and curve["eval_step"] == [1]


def test_evaluate_restores_training_mode():
    model = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.Dropout(0.5))
    x, y = Line().sample(8, torch.Generator().manual_seed(0), "cpu", torch.float32)
    assert set(evaluate(model, Line(), x, y)) == {"mse", "close"} and model.training


@pytest.mark.parametrize("kw,match", [(dict(steps=0), "steps"), (dict(batch_size=0), "batch_size"),
                                      (dict(eval_every=-1), "eval_every"), (dict(eval_size=0), "eval_size")])
def test_bad_arguments_name_themselves(kw, match):
    model = torch.nn.Linear(1, 1)
    args = dict(steps=5) | kw
    with pytest.raises(ValueError, match=match):
        fit(model, Line(), torch.optim.SGD(model.parameters(), lr=0.1), args.pop("steps"), **args)


def test_progress_lines_for_logs(capsys):
    model = torch.nn.Linear(1, 1, bias=False)
    fit(model, Line(), torch.optim.SGD(model.parameters(), lr=0.1), 40, eval_size=8, progress="lines", desc="line")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("line: step 1/40") and len(out) == 21      # step 1, then every 2 steps
