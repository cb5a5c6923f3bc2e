"""Text encoders load through the same code path users run: a folder saved with save_pretrained."""
import pytest
import torch

from backend.text_encoder import TextEncoder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    d = tmp_path_factory.mktemp("clip")
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = ["<|startoftext|>", "<|endoftext|>"] + list(letters) + [c + "</w>" for c in letters]
    vocab = {t: i for i, t in enumerate(tokens)}  # no merges: words tokenise letter by letter
    (d / "vocab.json").write_text(__import__("json").dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt")).save_pretrained(d)
    cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1)
    torch.manual_seed(0)
    CLIPTextModel(cfg).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    d = tmp_path_factory.mktemp("t5")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "red": 4, "cube": 5, "blue": 6}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(d)
    cfg = T5Config(vocab_size=7, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, pad_token_id=0,
                   eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(0)
    T5EncoderModel(cfg).save_pretrained(d)
    return d


@pytest.mark.parametrize("which,kind", [("tiny_clip", "clip"), ("tiny_t5", "t5")])
def test_folder_encoders(request, tmp_path, which, kind):
    folder = request.getfixturevalue(which)
    enc = TextEncoder(str(folder), max_length=8, cache_dir=tmp_path)
    assert enc.kind == kind and enc.dim == 16
    e = enc(["a red cube", "a blue cube"])
    assert e.tokens.shape == (2, 8, 16) and e.mask.shape == (2, 8)
    assert not torch.allclose(e.tokens[0], e.tokens[1])
    # cached: a fresh encoder answers from disk without loading the model
    enc2 = TextEncoder(str(folder), max_length=8, cache_dir=tmp_path)
    e2 = enc2(["a red cube"])
    assert enc2._model is None
    torch.testing.assert_close(e2.tokens[0], e.tokens[0])


def test_minilm_default_is_real_and_cached(tmp_path):
    enc = TextEncoder("minilm", cache_dir=tmp_path)
    e = enc(["a red cube", "a red cube", "a crimson box", "a green banana"])
    assert e.tokens.shape == (4, 32, 384)
    torch.testing.assert_close(e.tokens[0], e.tokens[1])

    def pooled(i):
        return (e.tokens[i] * e.mask[i, :, None]).sum(0) / e.mask[i].sum()

    cos = torch.nn.functional.cosine_similarity
    # a real pretrained encoder: synonyms are closer than unrelated prompts
    assert cos(pooled(0), pooled(2), dim=0) > cos(pooled(0), pooled(3), dim=0)
    assert len(list(tmp_path.rglob("*.safetensors"))) == 3  # three distinct prompts cached


def test_cache_key_depends_on_encoder_and_prompt(tmp_path):
    enc = TextEncoder("minilm", cache_dir=tmp_path)
    assert enc._key("a") != enc._key("b")
    enc.encoder_id = "other"
    assert enc._key("a") != TextEncoder("minilm", cache_dir=tmp_path)._key("a")


@pytest.fixture(scope="module")
def whole_clip(tiny_clip, tmp_path_factory):
    """A whole CLIP model (text and vision towers, projections) with the tiny tokenizer beside it: the
    layout of ``openai/clip-vit-large-patch14``, which the IF preset's mapping network reads."""
    import shutil

    from transformers import CLIPConfig, CLIPModel

    d = tmp_path_factory.mktemp("whole_clip")
    for f in tiny_clip.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "merges", "special_tokens")):
            shutil.copy(f, d / f.name)
    text = dict(vocab_size=54, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=16)
    torch.manual_seed(1)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).save_pretrained(d)
    return d


def test_whole_clip_checkpoint_loads_its_text_tower_quietly(whole_clip, tmp_path):
    """The text tower's own weights (the same tokens as CLIPModel's text model), without transformers'
    key-by-key report of the vision tower it leaves out."""
    import logging

    from transformers import AutoTokenizer, CLIPModel, CLIPTextModel

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    log = logging.getLogger("transformers.modeling_utils")  # (transformers' loggers do not reach caplog's)
    handler = Keep(logging.WARNING)
    log.addHandler(handler)
    try:
        CLIPTextModel.from_pretrained(whole_clip)  # what transformers says on its own
        assert any("vision_model" in r for r in records)
        records.clear()
        enc = TextEncoder(str(whole_clip), cache_dir=tmp_path).load()
    finally:
        log.removeHandler(handler)
    assert not [r for r in records if "vision_model" in r or "UNEXPECTED" in r], records
    assert (enc.kind, enc.dim, enc.max_length) == ("clip", 16, 77)
    got = enc(["a red cube", "a blue cube"]).tokens
    ids = AutoTokenizer.from_pretrained(whole_clip)(["a red cube", "a blue cube"], padding="max_length",
                                                    max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        want = CLIPModel.from_pretrained(whole_clip).text_model(input_ids=ids).last_hidden_state
    assert torch.equal(got, want)


def test_clip_checkpoint_without_its_text_weights_is_refused(whole_clip, tmp_path):
    """transformers would fill missing weights with random ones: embeddings of noise, trained on silently."""
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(whole_clip, broken)
    state = load_file(broken / "model.safetensors")
    save_file({k: v for k, v in state.items() if "final_layer_norm" not in k}, broken / "model.safetensors",
              metadata={"format": "pt"})
    enc = TextEncoder(str(broken), cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match=r"lacks 2 of the CLIP text encoder's weights \(e\.g\. .*final_layer_norm"):
        enc(["a red cube"])
