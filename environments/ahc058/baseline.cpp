// Baseline for AHC058: a greedy planner.
// Each turn, estimate for every machine what one more power point earns by the end (the apples
// it adds, or the machines it adds one level down turned into apples by the powers already
// there, over the turns left after saving up for it), divide by its price, and buy the best
// option once it is affordable; do nothing while saving for it.
#include <bits/stdc++.h>
using namespace std;
// EVOLVE-BLOCK-START
const double DISCOUNT = 1.0;  // per turn spent saving up: below 1 prefers options bought sooner
const double HORIZON = 1.0;  // share of the turns left that an option is counted to earn over
// EVOLVE-BLOCK-END
typedef __int128 big;

string str(big v) {  // printf has no __int128
    string s = v == 0 ? "0" : "";
    for (; v > 0; v /= 10) s += char('0' + (int)(v % 10));
    return string(s.rbegin(), s.rend());
}

int main() {
    int N, L, T;
    long long K;
    if (scanf("%d %d %d %lld", &N, &L, &T, &K) != 4) return 1;
    vector<long long> A(N);
    for (auto &a : A) scanf("%lld", &a);
    vector<vector<long long>> C(L, vector<long long>(N));
    for (auto &row : C)
        for (auto &c : row) scanf("%lld", &c);
    vector<vector<big>> B(L, vector<big>(N, 1));
    vector<vector<long long>> P(L, vector<long long>(N, 0));
    big apples = K;
    for (int t = 0; t < T; t++) {
        big income = 0;
        for (int j = 0; j < N; j++) income += (big)A[j] * B[0][j] * P[0][j];
        double bestRatio = 0;
        int bi = -1, bj = -1;
        for (int i = 0; i < L; i++)
            for (int j = 0; j < N; j++) {
                big cost = (big)C[i][j] * (P[i][j] + 1);
                double wait = 0;
                if (cost > apples) {
                    if (income == 0) continue;
                    wait = ceil((double)(cost - apples) / (double)income);
                }
                double rem = (T - t - wait) * HORIZON;
                if (rem <= i) continue;
                // one more power adds B[i][j] per turn at level i-1; chain down to apples:
                // sum over the turns left of the level-by-level products ~ rem^(i+1)/(i+1)!
                double gain = (double)B[i][j] * (double)A[j];
                for (int k = 0; k < i; k++) gain *= (double)P[k][j];
                double turns = 1;
                for (int k = 0; k <= i; k++) turns *= (rem - k) / (k + 1);
                gain *= turns;
                double ratio = gain / (double)cost * pow(DISCOUNT, wait);
                if (ratio > 1.0 && ratio > bestRatio) { bestRatio = ratio; bi = i; bj = j; }
            }
        bool buy = bi >= 0 && (big)C[bi][bj] * (P[bi][bj] + 1) <= apples;
        if (buy) {
            apples -= (big)C[bi][bj] * (P[bi][bj] + 1);
            P[bi][bj]++;
            printf("%d %d\n", bi, bj);
        } else {
            printf("-1\n");
        }
        for (int j = 0; j < N; j++) apples += (big)A[j] * B[0][j] * P[0][j];
        for (int i = 1; i < L; i++)
            for (int j = 0; j < N; j++) B[i - 1][j] += B[i][j] * P[i][j];
    }
    fprintf(stderr, "final apples: %s\n", str(apples).c_str());
    return 0;
}
