// Starter for AHC039: the baseline's best rectangle on a coarse grid, then a seeded random search.
// Count (mackerels - sardines) per S x S cell, find the rectangle of cells with the largest
// sum (Kadane's algorithm over every pair of rows); then move one side at a time by a random
// amount up to STEP, keeping the moves that catch more mackerels than sardines. argv[1] seeds it.
#include <bits/stdc++.h>
using namespace std;
// EVOLVE-BLOCK-START
constexpr int S = 500;  // grid cell size of the coarse search
constexpr int MOVES = 300;  // random moves of one side of the net
constexpr int STEP = 1000;  // the largest move
// EVOLVE-BLOCK-END

int main(int argc, char **argv) {
    const int MAXC = 100000, G = MAXC / S;  // cell k covers [k*S, k*S + S - 1]
    int n;
    if (scanf("%d", &n) != 1) return 1;
    vector<vector<int>> w(G, vector<int>(G, 0));  // w[y][x]
    vector<int> fx(2 * n), fy(2 * n);
    for (int i = 0; i < 2 * n; i++) {
        int x, y;
        if (scanf("%d %d", &x, &y) != 2) return 1;
        fx[i] = x, fy[i] = y;
        int cx = min(x / S, G - 1), cy = min(y / S, G - 1);  // x = 100000 joins the last cell
        w[cy][cx] += i < n ? 1 : -1;
    }
    long long best = LLONG_MIN;
    int bx0 = 0, bx1 = 0, by0 = 0, by1 = 0;
    vector<long long> col(G);
    for (int y0 = 0; y0 < G; y0++) {
        fill(col.begin(), col.end(), 0);
        for (int y1 = y0; y1 < G; y1++) {
            for (int x = 0; x < G; x++) col[x] += w[y1][x];
            long long run = 0;
            int start = 0;
            for (int x = 0; x < G; x++) {
                if (run <= 0) { run = 0; start = x; }
                run += col[x];
                if (run > best) { best = run; bx0 = start; bx1 = x; by0 = y0; by1 = y1; }
            }
        }
    }
    auto hi = [&](int c) { return c == G - 1 ? MAXC : c * S + S - 1; };
    int r[4] = {bx0 * S, by0 * S, hi(bx1), hi(by1)};  // x0, y0, x1, y1
    auto value = [&](const int *q) {  // mackerels - sardines inside or on the rectangle q
        int v = 0;
        for (int i = 0; i < 2 * n; i++)
            if (q[0] <= fx[i] && fx[i] <= q[2] && q[1] <= fy[i] && fy[i] <= q[3])
                v += i < n ? 1 : -1;
        return v;
    };
    mt19937 rng(argc > 1 ? atoi(argv[1]) : 0);
    int cur = value(r);
    for (int m = 0; m < MOVES; m++) {
        int q[4] = {r[0], r[1], r[2], r[3]}, side = rng() % 4;
        q[side] = clamp(q[side] + (int)(rng() % (2 * STEP + 1)) - STEP, 0, MAXC);
        if (q[0] >= q[2] || q[1] >= q[3]) continue;
        int v = value(q);
        if (v > cur) cur = v, copy(q, q + 4, r);
    }
    printf("4\n%d %d\n%d %d\n%d %d\n%d %d\n", r[0], r[1], r[2], r[1], r[2], r[3], r[0], r[3]);
    return 0;
}
