// Baseline for AHC039: the best axis-parallel rectangle on a coarse grid.
// Count (mackerels - sardines) per 500 x 500 cell, find the rectangle of cells with the largest
// sum (Kadane's algorithm over every pair of rows), and output its four corners.
#include <bits/stdc++.h>
using namespace std;
// EVOLVE-BLOCK-START
constexpr int S = 500;  // grid cell size: the net's corners lie on multiples of S
// EVOLVE-BLOCK-END

int main() {
    const int MAXC = 100000, G = MAXC / S;  // cell k covers [k*S, k*S + S - 1]
    int n;
    if (scanf("%d", &n) != 1) return 1;
    vector<vector<int>> w(G, vector<int>(G, 0));  // w[y][x]
    for (int i = 0; i < 2 * n; i++) {
        int x, y;
        if (scanf("%d %d", &x, &y) != 2) return 1;
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
    auto lo = [&](int c) { return c * S; };
    auto hi = [&](int c) { return c == G - 1 ? MAXC : c * S + S - 1; };
    printf("4\n%d %d\n%d %d\n%d %d\n%d %d\n", lo(bx0), lo(by0), hi(bx1), lo(by0), hi(bx1),
           hi(by1), lo(bx0), hi(by1));
    return 0;
}
