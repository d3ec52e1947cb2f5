"""What each named program computes, in words and formulas: the first section of its explain
page ("What it computes")."""
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
