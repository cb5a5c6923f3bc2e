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
