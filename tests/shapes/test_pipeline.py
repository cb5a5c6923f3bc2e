"""End to end on CPU in seconds: a tiny teacher → the pixel guidance → a tiny SDS run → GT metrics."""
import json

import pytest
import torch

from training.shapes import teacher as T
from training.shapes.world import get_world

PROMPTS = ["a red sphere", "a blue cube wearing a yellow party hat", "a green cone on a black plate",
           "a yellow torus with pink ears"]


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    world = get_world()
    idx = [world.index(p) for p in PROMPTS]
    cfg = T.TeacherConfig(block_out_channels=(16, 32), norm_num_groups=8, batch_size=4, views_per_prompt=2)
    root = tmp_path_factory.mktemp("shapes")
    out = T.train_teacher(root / "teacher", steps=2, cfg=cfg, data_dir=root / "data", prompts=idx,
                          save_every=1, progress=False)
    return out, root, idx


@pytest.mark.slow
def test_teacher_folder_layout_and_resume(tiny_teacher):
    out, root, idx = tiny_teacher
    meta = json.loads((out / "att3d_teacher.json").read_text())
    assert meta["text_encoder"] == "minilm" and meta["max_length"] == 32 and meta["image_size"] == 32
    assert meta["prediction_type"] == "v_prediction" and meta["training"]["snr_gamma"] == 5.0  # the defaults
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (out / "scheduler" / "scheduler_config.json").is_file()
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt"))  # no pickles
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2
    with pytest.raises(ValueError, match="resume"):
        T.train_teacher(out, steps=3, data_dir=root / "data", prompts=idx, progress=False)
    T.train_teacher(out, steps=3, resume=True, data_dir=root / "data", prompts=idx, progress=False)
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 3
    assert json.loads((out / "att3d_teacher.json").read_text())["steps"] == 3


@pytest.mark.slow
def test_teacher_loads_through_the_pixel_guidance(tiny_teacher):
    from training.guidance import GuidanceConfig, build_guidance

    out, _, _ = tiny_teacher
    g = build_guidance(GuidanceConfig(kind="pixel", model=str(out), scale=10.0))
    assert g.image_size == 32 and g.encoder.encoder_id == "minilm"
    img = torch.rand(2, 3, 24, 24, requires_grad=True)
    conds = g.embed(g.prompts_for(PROMPTS[:2], ["front", "side"]))
    res = g(img, [conds], generator=torch.Generator().manual_seed(0))
    res.loss.backward()
    assert torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0


@pytest.mark.slow
def test_teacher_sampling_and_nearest_gt(tiny_teacher):
    """The report's pieces: DDIM sampling (deterministic per seed, η changes it) and the nearest-GT match."""
    out, _, idx = tiny_teacher
    unet, _, meta = T.load_teacher(out)
    from backend.text_encoder import TextEncoder

    enc = TextEncoder("minilm", 32)
    tokens, null = enc._encode(PROMPTS[:2]).tokens, enc._encode([""]).tokens
    a = T.sample(unet, tokens, null, guidance=3.0, steps=4, seed=1)
    b = T.sample(unet, tokens, null, guidance=3.0, steps=4, seed=1)
    c = T.sample(unet, tokens, null, guidance=3.0, steps=4, seed=1, eta=1.0)
    assert a.shape == (2, 3, 32, 32) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # CFG 1 skips the unconditional pass: the same as guiding towards the prompt from itself
    one = T.sample(unet, tokens[:1], null, guidance=1.0, steps=4, seed=1)
    same = T.sample(unet, tokens[:1], tokens[:1], guidance=3.0, steps=4, seed=1)
    assert torch.allclose(one, same, atol=1e-4) and not torch.allclose(one, a[:1], atol=1e-3)
    gallery = torch.rand(5, 3, 3, 8, 8)  # 5 prompts × 3 views
    queries = torch.stack([gallery[3, 1], gallery[0, 2] + 0.01])
    near, d = T.nearest_prompts(queries, gallery)
    assert near.tolist() == [3, 0] and d.shape == (2, 5) and float(d[0, 3]) < 1e-6


@pytest.mark.slow
def test_tiny_sds_run_and_gt_metrics(tiny_teacher, tmp_path):
    from training.config import config_from_dict
    from training.shapes.demo import demo_config
    from training.shapes.metrics import evaluate
    from training.train import train

    out, _, idx = tiny_teacher
    cfg = demo_config(str(out), steps=3, batch_size=2, model={"resolutions": [6, 10], "v_dim": 4},
                      render={"height": 16, "width": 16, "n_samples": 12}, checkpoint_every=0)
    cfg["run"]["preview_every"] = 0
    res = train(config_from_dict(cfg), tmp_path / "run", prompts=PROMPTS[:2], progress=False)
    assert res.step == 3 and res.model_dir is not None
    m = evaluate(str(res.model_dir), prompts=idx[:2], queries=idx, grid=24, progress=False)
    assert m["n_prompts"] == 2 and m["n_queries"] == 4
    for k in ("iou", "color_error", "r_precision", "shape_acc"):
        assert 0.0 <= m[k] <= 1.0, k
    assert len(m["per_prompt"]) == 2 and m["per_prompt"][0]["prompt"] == PROMPTS[0]


@pytest.mark.slow
def test_train_demo_cli_trains_resumes_and_ships(tiny_teacher, tmp_path, monkeypatch, capsys):
    from backend.cli import main
    from backend.model import load_model, save_model
    from training.shapes import demo

    out, _, idx = tiny_teacher
    small = ["--set", "model.resolutions=[6, 10]", "--set", "model.v_dim=4", "--set", "render.height=16",
             "--set", "render.width=16", "--set", "render.n_samples=8"]
    monkeypatch.setattr(demo, "SHIP_DIR", tmp_path / "models" / "demo")
    # the "12.5 %" split is 2 prompts, the "50 %" one all 4
    monkeypatch.setattr(demo, "seen_prompts", lambda fraction=demo.SPLIT, seed=0: PROMPTS[:2 if fraction < 0.5 else 4])
    run = tmp_path / "run"
    args = ["train-demo", "--teacher", str(out), "--out", str(run), "--batch-size", "2", "--quiet", *small]
    assert main(args + ["--steps", "2"]) == 0
    assert "stopped at step 2 (done)" in capsys.readouterr().out
    assert main(args + ["--steps", "3", "--resume"]) == 0
    assert "stopped at step 3 (done)" in capsys.readouterr().out
    (tmp_path / "eval.json").write_text(json.dumps({"iou": 0.5, "per_prompt": [{"x": 1}]}))
    # the run's calibrated level (att3d calibrate-iso --write) ships with its record
    trained = (run / "model" / "config.json").read_text()
    run_cfg = json.loads(trained)
    calibration = {"n_prompts": 2, "before": {"iso_density": 5.0}, "after": {"iso_density": 6.5}}
    run_cfg["architecture"]["iso_density"] = 6.5
    run_cfg["provenance"].setdefault("shapes", {})["iso_calibration"] = calibration
    (run / "model" / "config.json").write_text(json.dumps(run_cfg))
    assert main(["train-demo", "--ship", str(run), "--metrics", str(tmp_path / "eval.json")]) == 0
    (run / "model" / "config.json").write_text(trained)  # (the level the runs below go on from)
    model, cfg = load_model(tmp_path / "models" / "demo")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "models" / "demo" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}  # shipped in fp16
    assert next(model.parameters()).dtype == torch.float32  # and loaded in fp32 for use
    shapes = cfg["provenance"]["shapes"]
    assert shapes["split"] == "12.5%" and shapes["steps"] == 3 and shapes["metrics"] == {"iou": 0.5}
    assert shapes["iso_calibration"] == calibration and model.config.iso_density == 6.5
    assert shapes["guidance"]["loss"] == "SDS only" and shapes["guidance"]["scale"] == demo.GUIDANCE_SCALE
    assert shapes["guidance"]["teacher"] == out.name  # a teacher outside the repository: by its name
    assert not _machine_paths(cfg), _machine_paths(cfg)  # no path of the machine that trained it
    assert demo._repo_relative(str(T.resolve_teacher("shipped"))) == "training/shapes/weights/teacher"
    teacher_meta = json.loads((out / "att3d_teacher.json").read_text())
    assert shapes["guidance"]["teacher_meta"]["steps"] == teacher_meta["steps"]
    assert shapes["guidance"]["teacher_meta"]["prediction_type"] == "v_prediction"
    # the seen prompts stay: the service's "far from the training prompts" needs them (issue 14)
    assert cfg["provenance"]["name"] == "demo" and cfg["provenance"]["prompts"] == PROMPTS[:2]
    assert shapes["init"] is None

    # the 50 % split, started from the 12.5 % run's weights (shifted by 0.25 so that "started from
    # them" is visible after one step), with the chain in the provenance
    first, first_cfg = load_model(run / "model")
    with torch.no_grad():
        for prm in first.parameters():
            prm.add_(0.25)
    save_model(first, tmp_path / "init", first_cfg["provenance"])
    run50 = tmp_path / "run50"
    args50 = ["train-demo", "--teacher", str(out), "--out", str(run50), "--batch-size", "2", "--quiet",
              "--split", "50%", "--init", str(tmp_path / "init"), *small]
    assert main(args50 + ["--steps", "1"]) == 0
    after, _ = load_model(run50 / "model")
    moved = [(a - b).abs().max().item() for a, b in zip(after.parameters(), first.parameters())]
    assert max(moved) < 0.01  # one Adam step of lr 1e-3 from the init weights
    assert main(["train-demo", "--ship", str(run50)]) == 0
    _, cfg = load_model(tmp_path / "models" / "demo")
    shapes = cfg["provenance"]["shapes"]
    assert shapes["split"] == "50%" and shapes["n_seen"] == 4 and shapes["steps"] == 1
    assert shapes["init"] == {"split": "12.5%", "n_prompts": 2, "steps": 3, "frames_per_prompt": 3.0,
                              "guidance_scale": demo.GUIDANCE_SCALE, "init": None}
    init = cfg["provenance"]["init"]  # the run it started from, by name and weights hash
    assert init["name"] == "init" and len(init["sha256"]) == 64 and "path" not in init
    assert cfg["provenance"]["config"]["run"]["init"] == "init" and not _machine_paths(cfg)
    # a run on prompts that are no seen split cannot ship as the demo
    monkeypatch.setattr(demo, "seen_prompts", lambda fraction=demo.SPLIT, seed=0: PROMPTS[1:3])
    assert main(["train-demo", "--ship", str(run50)]) == 2
    assert "did not train on a seen split" in capsys.readouterr().err


def _machine_paths(obj) -> list[str]:
    """Every string in a JSON document that is an absolute path."""
    if isinstance(obj, dict):
        return [p for v in obj.values() for p in _machine_paths(v)]
    if isinstance(obj, list):
        return [p for v in obj for p in _machine_paths(v)]
    return [obj] if isinstance(obj, str) and obj.startswith("/") else []


def test_portable_provenance_rewrites_the_paths_of_older_records():
    from training.shapes.demo import portable_provenance

    old = {"init": {"path": "/work/demo_run50/checkpoints/step_0001053", "guidance": {"model": "/x/teacher"},
                    "init": {"path": "/work/demo_run2/checkpoints/step_0003983"}},
           "config": {"run": {"init": "/work/demo_run50/checkpoints/step_0001053"}}}
    new = portable_provenance(old)
    assert new["init"]["name"] == "demo_run50/step_0001053" and new["init"]["guidance"]["model"] == "teacher"
    assert new["init"]["init"]["name"] == "demo_run2/step_0003983"
    assert new["config"]["run"]["init"] == "demo_run50/step_0001053" and not _machine_paths(new)
    assert old["init"]["path"].startswith("/")  # the input is left alone


def test_train_demo_cli_errors(tmp_path, capsys):
    from backend.cli import main

    assert main(["train-demo", "--teacher", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert "not a teacher folder" in capsys.readouterr().err
    assert main(["train-demo", "--ship", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{")
    assert main(["train-demo", "--ship", str(tmp_path), "--metrics", str(tmp_path / "bad.json")]) == 2
    assert "not the JSON" in capsys.readouterr().err
    assert main(["train-demo", "--out", str(tmp_path / "run"), "--split", "30%"]) == 2
    assert "use one of 12.5%, 50%" in capsys.readouterr().err
    assert main(["train-demo", "--out", str(tmp_path / "run"), "--init", str(tmp_path / "nope")]) == 2
    assert "no such model, run or checkpoint folder" in capsys.readouterr().err
    assert main(["train-demo", "--out", str(tmp_path / "run"), "--set", "regularizers.distortoin=1"]) == 2
    assert "did you mean regularizers.distortion" in capsys.readouterr().err
    assert main(["train-demo", "--out", str(tmp_path / "run"), "--time-limit", "0"]) == 2
    assert "--time-limit must be a positive" in capsys.readouterr().err


def test_eval_defaults_to_the_split_the_model_trained_on():
    from training.prompts import prompt_hash
    from training.shapes.demo import seen_prompts
    from training.shapes.metrics import _trained_split

    assert _trained_split({"shapes": {"split_fraction": 0.5}}) == 0.5  # a shipped demo records it
    assert _trained_split({"prompt_set": {"sha256": prompt_hash(seen_prompts(0.5))}}) == 0.5  # a run's prompts
    assert _trained_split({"prompt_set": {"sha256": prompt_hash(seen_prompts(0.125))}}) == 0.125
    assert _trained_split({"prompt_set": {"sha256": prompt_hash(PROMPTS)}}) == 0.125  # anything else


@pytest.mark.slow
def test_gt_metrics_are_perfect_for_a_perfect_field():
    """The metric code path itself: a 'model' whose field is the ground truth scores IoU≈1, R-precision 1."""
    from training.shapes.metrics import evaluate

    world = get_world()
    idx = [world.index(p) for p in PROMPTS]
    oracle = _Oracle(world)
    m = evaluate(oracle, prompts=idx, queries=idx, grid=32, progress=False, encoder=oracle, surface=2,
                 surface_resolution=48)
    assert m["iou"] > 0.9 and m["color_error"] < 0.05 and m["r_precision"] == 1.0
    # the true field's isosurface scores near the floor of every surface measure (its density is a
    # near-step, so marching cubes places vertices within a voxel rather than exactly: a few degrees)
    assert m["n_surface"] == 2 and set(m["surface"]) == set(m["surface_floor"])
    s, f = m["surface"], m["surface_floor"]
    assert s["normal_error_deg"] < f["normal_error_deg"] + 4 and abs(s["volume_ratio"] - 1) < 0.08
    assert s["surface_distance"] < 0.3 and s["body_color_std"] < 0.01
    assert m["by_shape"] and sum(v["n"] for v in m["by_shape"].values()) == len(idx)


class _Oracle(torch.nn.Module):
    """Looks like an ATT3D model but answers with the GT scene of the prompt it is given."""

    def __init__(self, world):
        super().__init__()
        from backend.model import ModelConfig

        self.world = world
        self.config = ModelConfig(iso_density=100.0)  # the GT density at sdf = 0

    def __call__(self, prompts):  # as the text encoder: the "embedding" is the prompt index
        from backend.text_encoder import TextEmbedding

        i = torch.tensor([[float(self.world.index(prompts[0]))]])
        return TextEmbedding(i, torch.ones(1, 1, dtype=torch.bool))

    def modulate(self, tokens, mask):
        from backend.mapping_network import Modulation

        return Modulation(tokens.reshape(-1, 1), torch.zeros(tokens.shape[0], 1))

    def _scene(self, mod):
        return self.world.scene(int(mod.params[0, 0]))

    def density(self, mod, pts):
        d, _ = self._scene(mod).field(pts)
        return d

    def field(self, mod, pts):
        return self._scene(mod).field(pts)

    def render(self, mod, cams, h, w, n_samples=64, stratified=False, use_env=False, **kw):
        from training.shapes.world import render_scenes

        return render_scenes([self._scene(mod)] * len(cams), cams, h, n_samples)


@pytest.mark.slow
def test_ship_teacher_is_fp16_without_checkpoint_and_loads(tiny_teacher, tmp_path):
    from safetensors import safe_open

    from training.guidance import GuidanceConfig, build_guidance

    out, _, _ = tiny_teacher
    dest = T.ship_teacher(out, tmp_path / "shipped")
    assert not (dest / "checkpoint").exists()
    with safe_open(str(dest / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    g = build_guidance(GuidanceConfig(kind="pixel", model=str(T.resolve_teacher(dest)), scale=10.0))
    assert g.unet.dtype == torch.float32 and g.image_size == 32  # fp32 on the CPU
    with pytest.raises(ValueError, match="not a teacher folder.*att3d train-teacher"):
        T.resolve_teacher(tmp_path)


@pytest.mark.slow
def test_warm_start_from_a_shipped_teacher_continues_its_steps(tiny_teacher, tmp_path):
    out, root, idx = tiny_teacher
    shipped = T.ship_teacher(out, tmp_path / "shipped")
    start = json.loads((shipped / "att3d_teacher.json").read_text())["steps"]
    warm = T.train_teacher(tmp_path / "warm", steps=start + 1, init=shipped, data_dir=root / "data", prompts=idx,
                           save_every=1, progress=False)
    state = json.loads((warm / "checkpoint" / "state.json").read_text())
    assert state["step"] == start + 1 and state["log"]["init"]["steps"] == start
    # it started from the shipped weights: one small step away from them, not from a fresh init
    from safetensors.torch import load_file

    a = load_file(str(shipped / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(warm / "checkpoint" / "model.safetensors"))
    k = "conv_in.weight"
    fresh = T.build_unet(T.TeacherConfig(block_out_channels=(16, 32), norm_num_groups=8)).state_dict()[k]
    assert (b[k] - a[k].float()).abs().mean() < (fresh - a[k].float()).abs().mean() / 5


def test_diffusion_loss_targets_and_min_snr_weights():
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1, torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([5, 200, 600, 990])
    a = sched.alphas_cumprod[t]
    v = sched.get_velocity(x0, noise, t)  # diffusers' own v target
    assert T.diffusion_loss(v, x0, noise, a, "v_prediction") < 1e-10
    assert T.diffusion_loss(noise, x0, noise, a, "epsilon") == 0
    assert T.diffusion_loss(noise, x0, noise, a, "v_prediction") > 0.1
    # min-SNR-γ: a unit error weighs min(SNR, γ)/(SNR + 1) for v, so at most 1 and tiny at the noisiest t
    err = torch.ones_like(x0)
    per_t = [float(T.diffusion_loss(v[i:i + 1] + err[i:i + 1], x0[i:i + 1], noise[i:i + 1], a[i:i + 1],
                                    "v_prediction", snr_gamma=5.0)) for i in range(4)]
    snr = (a / (1 - a)).tolist()
    assert per_t == pytest.approx([min(s, 5.0) / (s + 1) for s in snr], rel=1e-4)
    assert max(per_t) <= 1 and per_t[-1] < 1e-3
    with pytest.raises(ValueError, match="unknown prediction type 'sample'"):
        T.diffusion_loss(v, x0, noise, a, "sample")


@pytest.mark.slow
def test_v_prediction_teacher_fine_tuned_from_an_epsilon_one(tiny_teacher, tmp_path):
    """--init with another prediction type: the scheduler, metadata and guidance all follow it; a resumed
    run refuses to change recipe."""
    from training.guidance import GuidanceConfig, build_guidance

    _, root, idx = tiny_teacher
    # a teacher from before the recipe options: ε, unweighted, no such keys in its metadata
    cfg = T.TeacherConfig(block_out_channels=(16, 32), norm_num_groups=8, batch_size=4, views_per_prompt=2,
                          prediction_type="epsilon", snr_gamma=0.0)
    out = T.train_teacher(tmp_path / "eps", steps=1, cfg=cfg, data_dir=root / "data", prompts=idx, progress=False)
    meta = json.loads((out / "att3d_teacher.json").read_text())
    for k in ("prediction_type", "snr_gamma"):
        meta["training"].pop(k)
    meta.pop("prediction_type")
    (out / "att3d_teacher.json").write_text(json.dumps(meta))
    assert T.config_from_dict(meta["training"]).prediction_type == "epsilon"
    start = 1
    v = T.train_teacher(tmp_path / "v", steps=start + 2, init=out, data_dir=root / "data", prompts=idx,
                        save_every=1, progress=False, recipe={"prediction_type": "v_prediction", "snr_gamma": 5.0})
    meta = json.loads((v / "att3d_teacher.json").read_text())
    assert meta["prediction_type"] == "v_prediction" and meta["training"]["snr_gamma"] == 5.0
    assert json.loads((v / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "v_prediction"
    state = json.loads((v / "checkpoint" / "state.json").read_text())
    assert state["log"]["init"]["prediction_type"] == "epsilon" and state["step"] == start + 2
    g = build_guidance(GuidanceConfig(kind="pixel", model=str(v), scale=10.0))
    assert g.prediction_type == "v_prediction"
    unet, _, meta = T.load_teacher(v)
    from backend.text_encoder import TextEncoder

    enc = TextEncoder("minilm", 32)
    img = T.sample(unet, enc._encode(PROMPTS[:1]).tokens, enc._encode([""]).tokens, guidance=3.0, steps=3,
                   cfg=T.config_from_dict(meta["training"]))
    assert img.shape == (1, 3, 32, 32) and torch.isfinite(img).all()
    with pytest.raises(ValueError, match="prediction_type='v_prediction'.*keeps its recipe"):
        T.train_teacher(v, steps=start + 3, resume=True, data_dir=root / "data", prompts=idx, progress=False,
                        recipe={"prediction_type": "epsilon"})
    with pytest.raises(ValueError, match="unknown teacher settings: colour"):
        T.train_teacher(tmp_path / "bad", steps=1, data_dir=root / "data", prompts=idx, progress=False,
                        recipe={"colour": 1})
    assert not (tmp_path / "bad").exists()  # refused before anything was written
