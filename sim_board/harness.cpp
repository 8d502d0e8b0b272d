// Simulated board: the Verilator model of eoq_system (hw/system.py) behind a
// byte pipe.  Request bytes come in on stdin, answer bytes go out on stdout
// (both binary); see sim_board/README.md.
//
//   * The clock is generated here; rx is fed one byte per cycle whenever the
//     link raises rx.ready, tx is always ready and every byte is forwarded.
//   * Between host bytes the model runs freely (runs proceed, the link's frame
//     timeout counts).  Once the line has been quiet for --idle-cycles
//     (default: the link's frame timeout plus a margin, so any stalled frame
//     has been answered) and the core is idle, the harness blocks on stdin
//     instead of spinning.
//   * EOF on stdin: finish what was received, let the core finish, flush the
//     answers, print statistics to stderr when --stats, exit 0.
//   * SIGUSR1: pulse rst for 4 cycles, like a board's reset button (the
//     registers reset, block RAM keeps its contents); counted in --stats.
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include "Veoq_system.h"
#include "verilated.h"

double sc_time_stamp() { return 0; }

static volatile sig_atomic_t reset_requested = 0;
static void request_reset(int) { reset_requested = 1; }

static void write_all(int fd, const uint8_t *data, size_t n) {
    while (n) {
        ssize_t k = ::write(fd, data, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                pollfd p{fd, POLLOUT, 0};
                ::poll(&p, 1, -1);
                continue;
            }
            std::exit(0);  // the host went away (EPIPE): nothing left to do
        }
        data += k;
        n -= (size_t)k;
    }
}

int main(int argc, char **argv) {
    uint64_t idle_cycles = (1ull << 20) + 4096;
    bool stats = false;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--idle-cycles" && i + 1 < argc) {
            idle_cycles = std::strtoull(argv[++i], nullptr, 0);
        } else if (arg == "--stats") {
            stats = true;
        } else if (arg.rfind("+verilator", 0) == 0) {
            // verilator runtime options pass through
        } else {
            std::fprintf(stderr, "sim_board: unknown argument %s\n"
                         "usage: harness [--idle-cycles N] [--stats]\n", arg.c_str());
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction reset_action {};
    reset_action.sa_handler = request_reset;
    sigaction(SIGUSR1, &reset_action, nullptr);   // no SA_RESTART: a blocking poll returns at once
    const int in_fd = 0, out_fd = 1;
    ::fcntl(in_fd, F_SETFL, ::fcntl(in_fd, F_GETFL) | O_NONBLOCK);

    VerilatedContext ctx;
    ctx.commandArgs(argc, argv);
    Veoq_system top{&ctx};

    std::vector<uint8_t> rx(1 << 16);
    size_t rx_head = 0, rx_tail = 0;          // bytes rx[rx_head, rx_tail) wait for the link
    std::vector<uint8_t> tx;
    tx.reserve(1 << 16);
    bool eof = false;
    uint64_t cycle = 0, quiet = 0, bytes_in = 0, bytes_out = 0, blocks = 0, resets = 0;
    auto start = std::chrono::steady_clock::now();

    // reset
    top.clk = 0;
    top.rst = 1;
    top.rx___05Fvalid = 0;
    top.tx___05Fready = 1;
    for (int i = 0; i < 4; ++i) {
        top.clk = 0; top.eval();
        top.clk = 1; top.eval();
    }
    top.rst = 0;

    auto fill = [&](int timeout_ms) {
        if (eof) return;
        if (rx_head == rx_tail) rx_head = rx_tail = 0;
        if (rx_tail == rx.size()) return;
        if (timeout_ms != 0) {
            pollfd p{in_fd, POLLIN, 0};
            int r = ::poll(&p, 1, timeout_ms);
            if (r <= 0) return;
        }
        ssize_t k = ::read(in_fd, rx.data() + rx_tail, rx.size() - rx_tail);
        if (k > 0) {
            rx_tail += (size_t)k;
            bytes_in += (uint64_t)k;
        } else if (k == 0) {
            eof = true;
        }
    };
    auto flush = [&]() {
        if (!tx.empty()) {
            write_all(out_fd, tx.data(), tx.size());
            bytes_out += tx.size();
            tx.clear();
        }
    };

    for (;;) {
        if (reset_requested) {
            reset_requested = 0;
            ++resets;
            top.rst = 1;
            for (int i = 0; i < 4; ++i) {
                top.clk = 0; top.eval();
                top.clk = 1; top.eval();
                ++cycle;
            }
            top.rst = 0;
            quiet = 0;
        }
        bool have = rx_head != rx_tail;
        if (!have) {
            // Poll the pipe only every 64 cycles while the host is quiet (a
            // syscall per cycle would dominate); block once idle for long.
            bool busy = top.status & 1;
            if (!busy && quiet >= idle_cycles && tx.empty()) {
                if (eof) break;
                ++blocks;
                fill(-1);
                quiet = 0;
            } else if ((quiet & 63) == 0) {
                fill(0);
            }
            have = rx_head != rx_tail;
            if (eof && !have && !busy && quiet >= 64 && tx.empty()) break;
        }
        top.clk = 0;
        top.rx___05Fvalid = have;
        top.rx___05Fpayload = have ? rx[rx_head] : 0;
        top.eval();
        bool take = have && top.rx___05Fready;
        bool give = top.tx___05Fvalid;
        uint8_t out = top.tx___05Fpayload;
        top.clk = 1;
        top.eval();
        ++cycle;
        if (take) {
            ++rx_head;
            quiet = 0;
        } else {
            ++quiet;
        }
        if (give) {
            tx.push_back(out);
            quiet = 0;
            if (tx.size() >= 4096) flush();
        } else if (!tx.empty()) {
            flush();                   // the answer paused or ended: hand it over
        }
    }
    flush();
    top.final();
    if (stats) {
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::fprintf(stderr,
                     "sim_board: cycles %llu wall_seconds %.3f cycles_per_second %.0f bytes_in %llu "
                     "bytes_out %llu idle_blocks %llu resets %llu\n",
                     (unsigned long long)cycle, secs, secs > 0 ? cycle / secs : 0.0,
                     (unsigned long long)bytes_in, (unsigned long long)bytes_out, (unsigned long long)blocks,
                     (unsigned long long)resets);
    }
    return 0;
}
