"""The Shapes presets in training/configs/shapes/: the demo's recipe and the Fig. 6 benchmark sizes
read from TOML are the values the README documents (and those the code held before they moved)."""
import pytest

from training.config import config_from_dict


def test_demo_preset_is_the_documented_recipe():
    from training.shapes.demo import GUIDANCE_SCALE, demo_config
    from training.shapes.world import camera_sampler

    cfg = config_from_dict(demo_config("path/to/teacher"))
    m, r, g, run = cfg.model, cfg.render, cfg.guidance, cfg.run
    assert m.resolutions == [9, 14, 22, 36] and m.features == 4 and m.v_dim == 32 and m.grid_scale == 32.0
    assert m.hidden == 32 and m.sphere_radius == 1.0 and m.text_encoder == "minilm" and m.max_length == 32
    assert (r.height, r.width, r.n_samples) == (32, 32, 32) and r.use_env is False
    assert r.normals == "finite_difference"
    assert g.kind == "pixel" and g.model == "path/to/teacher" and g.scale == GUIDANCE_SCALE == 2.5
    assert (g.t_min, g.t_max) == (0.02, 0.98) and g.view_prompts is True
    assert run.mode == "amortized" and run.steps == 3000 and run.batch_size == 8 and run.lr == 1e-3
    assert run.beta1 == 0.0 and run.checkpoint_every == 100 and run.keep_checkpoints == 2
    assert run.preview_every == 250 and run.log_every == 10 and run.eval_every == 0
    assert run.device == "cpu" and run.init == ""
    want = camera_sampler()  # the world's cameras, the distribution the teacher saw
    for k in ("distance", "focal", "elevation", "azimuth", "shading_probs", "ambient", "light_distance",
              "light_angle"):
        assert tuple(getattr(cfg.camera, k)) == pytest.approx(tuple(getattr(want, k))), k


def test_demo_config_arguments_override_the_preset():
    from training.shapes.demo import MODEL, demo_config

    c = demo_config("t", 7, batch_size=2, scale=5.0, lr=1e-2, model={"v_dim": 4}, render={"height": 16},
                    checkpoint_every=3, device="cuda", init="runs/x")
    assert {k: c["run"][k] for k in ("steps", "batch_size", "lr", "checkpoint_every", "device", "init")} == {
        "steps": 7, "batch_size": 2, "lr": 1e-2, "checkpoint_every": 3, "device": "cuda", "init": "runs/x"}
    assert c["guidance"]["scale"] == 5.0 and c["model"]["v_dim"] == 4 and c["render"]["height"] == 16
    assert c["model"]["resolutions"] == MODEL["resolutions"] and MODEL["v_dim"] == 32  # the preset is untouched


def test_demo_v2_recipe_adds_surface_priors_annealed_t_and_interpolants_to_v1():
    from training.shapes.demo import demo_config

    v1 = config_from_dict(demo_config("t"))
    v2 = config_from_dict(demo_config("t", recipe="v2"))
    assert v2.model == v1.model and v2.render == v1.render  # the same architecture: v2 starts from v1's weights
    assert v2.run.mode == "interpolation" and v2.run.batch_size == 32 and v2.run.device == "auto"
    assert v2.interpolation.random_pairs and v2.interpolation.target == "latent"
    assert v2.interpolation.kappa[0][1] == 2.0 and v2.interpolation.kappa[-1][1] == 0.5
    assert v2.regularizers.distortion > 0 and v2.regularizers.grid_tv > 0 and not v1.regularizers.active
    assert v2.guidance.t_max_end == 0.5 and v2.guidance.t_anneal_steps > 0 and v2.guidance.scale == 2.5
    with pytest.raises(ValueError, match="unknown demo recipe"):
        demo_config("t", recipe="v9")


def test_bench_sizes_are_the_documented_ones():
    from training.shapes.amortization_bench import SIZES

    assert SIZES == {
        "tiny": {"model": {"resolutions": [6, 10], "v_dim": 4}, "render": {"height": 16, "width": 16, "n_samples": 12},
                 "batch": 4, "amortized_steps": 20, "eval_every": 10, "n_eval": 4, "per_prompt": 4, "pp_steps": 10,
                 "pp_batch": 1, "pp_evals": [5, 10], "grid": 24},
        "small": {"model": {"resolutions": [8, 12, 16, 24], "v_dim": 16},
                  "render": {"height": 24, "width": 24, "n_samples": 24}, "batch": 8, "amortized_steps": 800,
                  "eval_every": 100, "n_eval": 24, "per_prompt": 16, "pp_steps": 100, "pp_batch": 1,
                  "pp_evals": [25, 50, 100], "grid": 32},
        "full": {"model": {}, "render": {}, "batch": 8, "amortized_steps": 4000, "eval_every": 500, "n_eval": 64,
                 "per_prompt": 32, "pp_steps": 500, "pp_batch": 1, "pp_evals": [50, 100, 250, 500], "grid": 64},
    }
    for S in SIZES.values():  # each size's model and render keys make a valid training config
        config_from_dict({"model": S["model"], "render": S["render"]})


def test_demo_v3_recipe_is_v2s_own_with_endpoint_keeping_interpolants_and_the_trees_in_focus():
    from training.shapes.demo import demo_config

    v1 = config_from_dict(demo_config("t"))
    v3 = config_from_dict(demo_config("t", recipe="v3"))
    assert v3.model == v1.model and v3.render == v1.render and v3.guidance.scale == v1.guidance.scale
    assert v3.regularizers.grid_tv == 1.0 and v3.regularizers.distortion == 0  # what v2 shipped with
    assert v3.guidance.t_anneal_steps == 0 and v3.run.batch_size == 8
    ic = v3.interpolation
    assert v3.run.mode == "interpolation" and ic.random_pairs and ic.partners == "nearest"
    assert ic.endpoint_share == 0.5
    assert ic.kappa[0] == [v3.run.steps // 2, 2.0] and ic.kappa[-1][1] <= 0.5  # the paper's proportions
    assert v3.prompts.focus == ("tree",) and 0 < v3.prompts.focus_share < 0.5
