"""Writes a tiny Llama-architecture model in GGUF with random weights.

The AI tests run llama-cpp-python's OpenAI-compatible server (llama.cpp
underneath) on it to check the OpenAI-compatible wire protocol against a
real inference server: the text
it writes is noise, but the requests, the streamed events, the token
counts, grammar-constrained JSON and the embeddings are the real thing.

The weights come from a fixed seed, so the same file comes out each time.
Greedy decoding (temperature 0) never picks a special or a byte token:
their rows of the output matrix are zero while every ordinary token's row
is random, so some ordinary token always scores higher. The answers are
then printable ASCII words, and they run to `max_tokens` rather than
stopping at an end-of-sequence token.

Usage: python tiny_llama.py OUT.gguf
"""

import sys

import numpy as np
import gguf

EMBED = 64
HEADS = 4
LAYERS = 2
FEED_FORWARD = 128
CONTEXT = 2048

WORDS = (
    "the a an of to and in is it that for on with as was at by this be from or "
    "are not have but they you we he she his her one all would there their what "
    "so up out if about who get which go me when make can like time no just him "
    "know take people into year your good some could them see other than then now "
    "look only come its over think also back after use two how our work first well "
    "way even new want because any these give day most us model flow node engine"
).split()


def vocabulary():
    tokens, types = [], []
    for special in ("<unk>", "<s>", "</s>"):
        tokens.append(special)
        types.append(gguf.TokenType.UNKNOWN if special == "<unk>" else gguf.TokenType.CONTROL)
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>")
        types.append(gguf.TokenType.BYTE)
    ordinary = ["\u2581"]
    ordinary += [chr(c) for c in range(33, 127)]
    ordinary += ["\u2581" + chr(c) for c in range(33, 127)]
    ordinary += ["\u2581" + w for w in WORDS if "\u2581" + w not in ordinary]
    for piece in ordinary:
        tokens.append(piece)
        types.append(gguf.TokenType.NORMAL)
    # SentencePiece merges by score: longer pieces first.
    scores = [0.0] * 259 + [float(len(p)) - 10.0 for p in ordinary]
    return tokens, scores, types, 259


def main(out):
    rng = np.random.default_rng(20261203)
    tokens, scores, types, first_ordinary = vocabulary()
    vocab = len(tokens)
    head_dim = EMBED // HEADS

    writer = gguf.GGUFWriter(out, "llama")
    writer.add_name("ghostflow-tiny-random")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(EMBED)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)

    def random(*shape, scale=0.05):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def ones(n):
        return np.ones(n, dtype=np.float32)

    writer.add_tensor("token_embd.weight", random(vocab, EMBED, scale=1.0))
    for i in range(LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones(EMBED))
        writer.add_tensor(f"blk.{i}.attn_q.weight", random(HEADS * head_dim, EMBED))
        writer.add_tensor(f"blk.{i}.attn_k.weight", random(HEADS * head_dim, EMBED))
        writer.add_tensor(f"blk.{i}.attn_v.weight", random(HEADS * head_dim, EMBED))
        writer.add_tensor(f"blk.{i}.attn_output.weight", random(EMBED, HEADS * head_dim))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones(EMBED))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", random(FEED_FORWARD, EMBED))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", random(FEED_FORWARD, EMBED))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", random(EMBED, FEED_FORWARD))
    writer.add_tensor("output_norm.weight", ones(EMBED))
    output = random(vocab, EMBED, scale=1.0)
    output[:first_ordinary, :] = 0.0
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: tiny_llama.py OUT.gguf")
    main(sys.argv[1])
