// Command portcullis is an OAuth 2.0 auth sidecar: it issues and verifies
// JWT access tokens, applies route policy and rate limits, and proxies
// allowed requests to the application. See README.md and ../shared/SPEC.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/server"
)

// version is stamped at build time with -ldflags "-X main.version=…".
var version = "dev"

// Exit codes.
const (
	exitOK        = 0
	exitFailure   = 1
	exitBadConfig = 2
)

// defaultMemoryLimit is the Go runtime's soft memory limit unless
// GOMEMLIMIT says otherwise: the garbage collector works harder as the heap
// nears it, so a process whose live data is bounded (see README, "Bounded
// memory") also keeps its RSS well inside a 128 MiB container limit
// instead of letting garbage grow to twice the live heap.
const defaultMemoryLimit = 100 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("portcullis", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", getenv("PORTCULLIS_CONFIG"), "configuration `file` (env PORTCULLIS_CONFIG)")
	checkConfig := fs.Bool("check-config", false, "validate the configuration, print every problem, exit 0 (valid) or 1")
	healthCheck := fs.Bool("health-check", false, "GET /health/live on the admin listener; exit 0 if it answers 200, else 1")
	hashSecret := fs.Bool("hash-secret", false, "read a client secret on stdin and print its bcrypt hash (cost BCRYPT_COST, default 12)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return exitBadConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "portcullis: unexpected arguments %q\n", fs.Args())
		return exitBadConfig
	}
	switch {
	case *showVersion:
		fmt.Fprintln(stdout, "portcullis", version)
		return exitOK
	case *hashSecret:
		return runHashSecret(getenv, stdin, stdout, stderr)
	case *healthCheck:
		return runHealthCheck(*configPath, getenv, stderr)
	}
	if *configPath == "" {
		fmt.Fprintln(stderr, "portcullis: -config is required (or set PORTCULLIS_CONFIG)")
		return exitBadConfig
	}
	cfg, warnings, err := config.Load(*configPath, getenv)
	if err == nil {
		var w2 []string
		_, w2, err = server.New(cfg, slog.New(slog.DiscardHandler))
		warnings = append(warnings, w2...)
	}
	if *checkConfig {
		for _, w := range warnings {
			fmt.Fprintln(stdout, "warning:", w)
		}
		if err != nil {
			printProblems(stdout, err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "%s: configuration is valid\n", *configPath)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "portcullis: configuration %s is invalid:\n", *configPath)
		printProblems(stderr, err)
		// Also as a structured security event, for log pipelines that only
		// read JSON: a refused config may be an attempted downgrade.
		slog.New(slog.NewJSONHandler(stderr, nil)).Error("configuration refused",
			"security_event", true, "config", *configPath, "problems", strings.Count(err.Error(), "\n")+1)
		return exitBadConfig
	}
	log := newLogger(cfg, stderr)
	redis.SetLogger(redisLogger{log})
	for _, w := range warnings {
		log.Warn("configuration warning", "problem", w)
	}
	srv, _, err := server.New(cfg, log)
	if err != nil {
		log.Error("startup failed", "error", err)
		return exitBadConfig
	}
	if err := srv.Run(ctx); err != nil {
		log.Error("server stopped with an error", "error", err)
		return exitFailure
	}
	return exitOK
}

// printProblems prints one problem per line; errors.Join separates them by
// newlines already.
func printProblems(w io.Writer, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		if line != "" {
			fmt.Fprintln(w, "  -", line)
		}
	}
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func runHashSecret(getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	cost, err := config.BcryptCost(getenv)
	if err != nil {
		fmt.Fprintln(stderr, "portcullis:", err)
		return exitFailure
	}
	data, err := io.ReadAll(io.LimitReader(stdin, 4096))
	if err != nil {
		fmt.Fprintln(stderr, "portcullis: reading the secret from stdin:", err)
		return exitFailure
	}
	secret := strings.TrimSuffix(string(data), "\n")
	switch {
	case secret == "":
		fmt.Fprintln(stderr, "portcullis: no secret on stdin (pipe it in: echo \"$SECRET\" | portcullis -hash-secret)")
		return exitFailure
	case len(secret) > 72:
		fmt.Fprintln(stderr, "portcullis: the secret is longer than 72 bytes, which bcrypt cannot check; use 32 to 72 bytes")
		return exitFailure
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), cost)
	if err != nil {
		fmt.Fprintln(stderr, "portcullis: hashing:", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, string(hash))
	return exitOK
}

// runHealthCheck is the distroless HEALTHCHECK: no shell, no curl.
func runHealthCheck(configPath string, getenv func(string) string, stderr io.Writer) int {
	addr := ":9090"
	if v := getenv("ADMIN_BIND_ADDR"); v != "" {
		addr = v
	}
	if configPath != "" {
		cfg, _, err := config.Load(configPath, getenv)
		if err != nil {
			fmt.Fprintln(stderr, "portcullis: health check: config:", err)
			return exitFailure
		}
		addr = cfg.AdminAddr()
		if addr == "" {
			addr = cfg.Listen
		}
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis: health check: bad address %q\n", addr)
		return exitFailure
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(host, port) + "/health/live")
	if err != nil {
		fmt.Fprintln(stderr, "portcullis: health check:", errors.Unwrap(err))
		return exitFailure
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, "portcullis: health check: status", resp.StatusCode)
		return exitFailure
	}
	return exitOK
}

// redisLogger routes go-redis's internal messages (pool dial failures) into
// our structured log at debug level: the limiter already reports outages once.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client", "message", fmt.Sprintf(format, v...))
}
