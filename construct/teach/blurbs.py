"""The words of an explain page: what each named program computes (its first section, "What
it computes"), what each fixed row holds and what each constant controls."""
from __future__ import annotations

BLURBS = {
    "gd": "one gradient-descent step on the first exemplar `(x_1, y_1)` from a fixed start `w0` "
          "on the ridge loss `(w^T x - y)^2 + lam |w|^2`, then predicts at the next x-token:\n\n"
          "    w' = w0 - 2 alpha (x_1 x_1^T w0 - y_1 x_1 + lam w0),   y_hat = w'^T x_q\n\n"
          "(Theorem 1 / Appendix A of Akyürek et al. 2023, step 6 corrected to `+lam`).",
    "sherman-morrison": "one Sherman–Morrison update of the ridge inverse from `A0^-1 = I / lam` "
          "with the first exemplar, then the ridge weights and the prediction at the next "
          "x-token:\n\n    A1^-1 = A0^-1 - A0^-1 x_1 x_1^T A0^-1 / (1 + x_1^T A0^-1 x_1)"
          " = (lam I + x_1 x_1^T)^-1\n    w' = A1^-1 x_1 y_1,   y_hat = w'^T x_q\n\n"
          "(Theorem 2 / Appendix B of Akyürek et al. 2023).",
    "sgd": "one pass of stochastic gradient descent over the exemplars, one stage per "
           "exemplar, predicting at every x-token with the weights so far:\n\n"
           "    w_i = w_{i-1} - 2 alpha (x_i x_i^T w_{i-1} - x_i y_i + lam w_{i-1}),   "
           "y_hat_k = w_k^T x_{k+1}\n\n"
           "from `w0`, held in the prior column (depth O(n); `--form shared` stores the stage "
           "once, so the parameter count does not grow with n).",
    "gd-batch": "one full-batch gradient step from `w0` on the mean loss over the exemplars "
                "before every x-token, at every prefix `k` at once:\n\n"
                "    w_k = w0 - 2 alpha ((1/k) sum_{i<=k} x_i (x_i^T w0 - y_i) + lam w0),   "
                "y_hat_k = w_k^T x_{k+1}\n\n"
                "Each y-token computes its exemplar's gradient; one mean read averages them at "
                "every x-token, so the depth does not grow with n.",
    "ridge": "ridge regression on the exemplars before every x-token, at every prefix `k` "
             "at once:\n\n    w_k = (lam I + sum_{i<=k} x_i x_i^T)^-1 sum_{i<=k} y_i x_i,"
             "   y_hat_k = w_k^T x_{k+1}\n\n"
             "By default (`--method solve`) one mean read gives `S_k/k`, `b_k/k` and `1/k` "
             "at every column, and `d` identical pivot stages solve `(S_k/k + lam/k I) w = "
             "b_k/k` inside each token by Gauss–Jordan (the matrix is positive definite, so "
             "no pivot search; after each pivot rows and columns turn by one so the next "
             "pivot is at the corner): `2d + 3` layers whatever `n` "
             "(`construct/algorithms/ridge_solve.py`). `--method newton` runs Newton–Schulz "
             "steps instead, `--method sherman-morrison` the paper's stack of `n` updates.",
}

FIXED_ROWS = {
    "pos": "`t / n_ctx` at column `t`: key code of every point read (`k_j = (j, j²)`)",
    "pos2": "`(t / n_ctx)²`: the second key code of point reads",
    "one": "constant 1: query offsets of the read maps",
    "is_x": "1 at x-token columns (even `t`), else 0",
    "is_y": "1 at y-token columns (odd `t`), else 0",
    "ln_zero": "always 0; balances every MLP unit's input weights to sum 0 (LN mean cancels)",
    "ln_pad_pos": "`+P` (mul layer) or `+N·c` (div layer), set by the self head: the LN scale",
    "ln_pad_neg": "`-P` / `-N·c`: the pad's mirror, so the pads add no mean",
}


def dyadic_row(name: str) -> str:
    """What a dyadic code row holds (``code_c3``: ``cos(2π t / 2^3)``; ``query0_s2``: read
    map 0's query, ``sin`` of its target)."""
    prefix, _, component = name.rpartition("_")
    if not (prefix == "code" or prefix.startswith("query")) or component[:1] not in ("c", "s"):
        return ""
    wave = {"c": "cos", "s": "sin"}[component[0]]
    if prefix == "code":
        return f"`{wave}(2π t / 2^{component[1:]})`: dyadic key code of every point read"
    return (f"`{wave}(2π τ / 2^{component[1:]})`, `τ` the column read map {prefix[5:]} reads "
            "(clamped): its dyadic query code")


CONSTANTS = {
    "input_bound": "declared bound `B` on every input entry; every bound assumes it",
    "n_ctx": "longest sequence the position table holds; enters softmax leak and rounding",
    "attn_hardness": "softmax hardness `N` of every head: leak `<= 2 e^-N` off the target",
    "mul_scale": "GeLU pre-scale `eps` of `mul` (Lemma 4): error `~1.5 eps²` (Richardson: "
                 "`~3.1 eps⁴`; polarized: `~1.6 eps⁴`) + `~u / eps`",
    "gelu_product": "`lemma4`: the paper's one-scale GeLU product; `richardson`: scales `eps` "
                    "and `2 eps` combined so the `eps²` terms cancel; `polarized`: the same "
                    "with four units per term, `G(x+y) + G(-x-y) - G(x-y) - G(y-x)`, a "
                    "quarter of the rounding",
    "position_code": "`quadratic`: point-read keys `(j, j²)`, gap `N`, float32 resolves them "
                     "to `n_ctx = 836`; `dyadic`: keys `cos, sin(2π j / 2^f)`, gap `2N` at any "
                     "length, `2F - 1` rows per read map",
    "target": "`paper`: GeLU MLPs and LayerNorm (the paper's lemmas); `gated`: ReLU-gated MLPs, "
              "exact products, division by a hinge seed and Newton steps, no LayerNorm",
    "newton_steps": "Newton steps `k` after the gated division's hinge seed (None: 3 in "
                    "float64, 2 in float32): relative error `eps0^(2^k)`, `2 + k` layers",
    "div_scale": "LayerNorm division pad `N_div` (Lemma 8): relative error `~E / N_div²`",
    "ln_pad": "LayerNorm pad `P` fixing the scale of `mul` layers (Lemma 6): rel. error `E/2P²`",
    "ln_eps": "LayerNorm epsilon (enters the division error)",
    "schedule": "`packed`: independent ops share a layer (Lemma 7); `sequential`: one each",
    "dtype": "dtype the constants above were tuned for",
}
