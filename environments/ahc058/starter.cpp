// Starter for AHC058: the baseline's greedy planner, run with seeded random settings.
// Each turn, estimate for every machine what one more power point earns by the end (the apples
// it adds, or the machines it adds one level down turned into apples by the powers already
// there, over the turns left after saving up for it), divide by its price, and buy the best
// option once it is affordable; do nothing while saving for it. The planner is run with the
// settings below and with TRIES random ones (argv[1] seeds them); the plan with the most apples
// at the end is printed.
#include <bits/stdc++.h>
using namespace std;
// EVOLVE-BLOCK-START
const double DISCOUNT = 1.0;  // per turn spent saving up: below 1 prefers options bought sooner
const double HORIZON = 1.0;  // share of the turns left that an option is counted to earn over
const int TRIES = 20;  // random settings tried: DISCOUNT in [0.8, 1], HORIZON in [0.5, 1]
// EVOLVE-BLOCK-END
typedef __int128 big;

string str(big v) {  // printf has no __int128
    string s = v == 0 ? "0" : "";
    for (; v > 0; v /= 10) s += char('0' + (int)(v % 10));
    return string(s.rbegin(), s.rend());
}

int N, L, T;
long long K;
vector<long long> A;
vector<vector<long long>> C;

// The greedy plan with these settings: its actions (-1, or i * N + j), and the apples at the end.
big plan(double discount, double horizon, vector<int> &actions) {
    actions.clear();
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
                double rem = (T - t - wait) * horizon;
                if (rem <= i) continue;
                // one more power adds B[i][j] per turn at level i-1; chain down to apples:
                // sum over the turns left of the level-by-level products ~ rem^(i+1)/(i+1)!
                double gain = (double)B[i][j] * (double)A[j];
                for (int k = 0; k < i; k++) gain *= (double)P[k][j];
                double turns = 1;
                for (int k = 0; k <= i; k++) turns *= (rem - k) / (k + 1);
                gain *= turns;
                double ratio = gain / (double)cost * pow(discount, wait);
                if (ratio > 1.0 && ratio > bestRatio) { bestRatio = ratio; bi = i; bj = j; }
            }
        bool buy = bi >= 0 && (big)C[bi][bj] * (P[bi][bj] + 1) <= apples;
        if (buy) {
            apples -= (big)C[bi][bj] * (P[bi][bj] + 1);
            P[bi][bj]++;
        }
        actions.push_back(buy ? bi * N + bj : -1);
        for (int j = 0; j < N; j++) apples += (big)A[j] * B[0][j] * P[0][j];
        for (int i = 1; i < L; i++)
            for (int j = 0; j < N; j++) B[i - 1][j] += B[i][j] * P[i][j];
    }
    return apples;
}

int main(int argc, char **argv) {
    if (scanf("%d %d %d %lld", &N, &L, &T, &K) != 4) return 1;
    A.resize(N);
    for (auto &a : A) scanf("%lld", &a);
    C.assign(L, vector<long long>(N));
    for (auto &row : C)
        for (auto &c : row) scanf("%lld", &c);
    mt19937 rng(argc > 1 ? atoi(argv[1]) : 0);
    uniform_real_distribution<double> discount(0.8, 1.0), horizon(0.5, 1.0);
    vector<int> actions, best;
    big most = plan(DISCOUNT, HORIZON, best);
    for (int k = 0; k < TRIES; k++) {
        double d = discount(rng), h = horizon(rng);
        big apples = plan(d, h, actions);
        if (apples > most) most = apples, best = actions;
    }
    for (int a : best) a < 0 ? printf("-1\n") : printf("%d %d\n", a / N, a % N);
    fprintf(stderr, "final apples: %s\n", str(most).c_str());
    return 0;
}
