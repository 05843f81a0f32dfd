// Command portcullis is an OAuth 2.0 auth sidecar: it issues and verifies
// JWT access tokens, applies route policy and rate limits, and proxies
// allowed requests to the application. See README.md and docs/.
package main

import (
	"context"
	"crypto/tls"
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
	"github.com/portcullis/portcullis/issuer"
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
	// SIGHUP reloads the configuration. It is caught before anything else
	// runs: its default action would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr, hup))
}

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer, hup <-chan os.Signal) int {
	fs := flag.NewFlagSet("portcullis", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", getenv("PORTCULLIS_CONFIG"), "configuration `file` (env PORTCULLIS_CONFIG); neither: configured by the environment alone")
	checkConfig := fs.Bool("check-config", false, "validate the configuration, print every problem, exit 0 (valid) or 1")
	healthCheck := fs.Bool("health-check", false, "GET /health/live on the admin listener; exit 0 if it answers 200, else 1")
	hashSecret := fs.Bool("hash-secret", false, "read a client secret on stdin and print its bcrypt hash (cost BCRYPT_COST, default 12)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	previous := fs.String("previous", "", "with -check-config: the configuration `file` running now; warn about key rotation steps that would break verifiers")
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
	if *previous != "" && !*checkConfig {
		fmt.Fprintln(stderr, "portcullis: -previous works with -check-config only")
		return exitBadConfig
	}
	cfg, warnings, ignoredEnv, err := loadConfig(*configPath, getenv)
	source := *configPath
	if source == "" {
		source = "the environment"
	}
	if err == nil {
		var w2 []string
		_, w2, err = server.New(cfg, slog.New(slog.DiscardHandler))
		warnings = append(warnings, w2...)
	}
	if *checkConfig {
		if *previous != "" {
			w, perr := rotationWarnings(*previous, *configPath, getenv)
			if perr != nil {
				fmt.Fprintf(stdout, "-previous %s: %v\n", *previous, perr)
				return exitFailure
			}
			warnings = append(warnings, w...)
		}
		for _, w := range append(ignoredEnv, warnings...) {
			fmt.Fprintln(stdout, "warning:", w)
		}
		if err != nil {
			printProblems(stdout, err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "%s: configuration is valid\n", source)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "portcullis: configuration %s is invalid:\n", source)
		printProblems(stderr, err)
		// Also as a structured security event, for log pipelines that only
		// read JSON: a refused config may be an attempted downgrade.
		jsonLog := slog.New(slog.NewJSONHandler(stderr, nil))
		logIgnoredEnv(jsonLog, ignoredEnv)
		jsonLog.Error("configuration refused",
			"security_event", true, "config", source, "problems", strings.Count(err.Error(), "\n")+1)
		return exitBadConfig
	}
	level := new(slog.LevelVar)
	log := newLogger(cfg, level, stderr)
	redis.SetLogger(redisLogger{log})
	logIgnoredEnv(log, ignoredEnv)
	for _, w := range warnings {
		log.Warn("configuration warning", "problem", w)
	}
	srv, _, err := server.New(cfg, log)
	if err != nil {
		log.Error("startup failed", "error", err)
		return exitBadConfig
	}
	path := *configPath
	srv.EnableReload(server.ReloadOptions{
		Load: func() (*config.Config, []string, error) {
			cfg, warnings, _, err := loadConfig(path, getenv)
			return cfg, warnings, err
		},
		File:    path,
		Getenv:  getenv,
		Signals: hup,
		Level:   level,
	})
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

// newLogger makes the process's logger; level follows log.level, and a
// reload sets it again.
func newLogger(cfg *config.Config, level *slog.LevelVar, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(cfg.Log.Level))
	level.Set(l)
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

// runHealthCheck is the distroless HEALTHCHECK: no shell, no curl. It reads
// only the listen addresses, never keys or client secrets, so a probe every
// few seconds costs no bcrypt and does not fail for want of a secret.
func runHealthCheck(configPath string, getenv func(string) string, stderr io.Writer) int {
	probe, err := config.ProbeTarget(configPath, getenv)
	if err != nil {
		fmt.Fprintln(stderr, "portcullis: health check:", err)
		return exitFailure
	}
	addr, scheme := probe.Admin, "http"
	if addr == "" {
		addr = probe.Listen
		if probe.TLS {
			scheme = "https" // listen serves only HTTPS then
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
	if scheme == "https" {
		// The process checks itself over loopback: the certificate names
		// the service, not 127.0.0.1, and liveness is all that is asked.
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	}
	resp, err := client.Get(scheme + "://" + net.JoinHostPort(host, port) + "/health/live")
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

// rotationWarnings compares the keys of the configuration running now
// (previous) with the next one: a signing key that verifiers have not seen
// in the JWKS yet, a removed key whose tokens may still be live. The
// previous file is read without validation: its key files may be gone.
func rotationWarnings(previous, next string, getenv func(string) string) ([]string, error) {
	prevKeys, err := config.LoadKeys(previous, getenv)
	if err != nil {
		return nil, err
	}
	nextKeys, err := config.LoadKeys(next, getenv)
	if err != nil {
		return nil, err
	}
	return issuer.RotationWarnings(prevKeys, nextKeys), nil
}

// redisLogger routes go-redis's internal messages (pool dial failures) into
// our structured log at debug level: the limiter already reports outages once.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client", "message", fmt.Sprintf(format, v...))
}

// loadConfig loads the file at path, or the environment-only configuration
// when path is "", and lists the environment variables that are set but
// unused, each with the reason.
func loadConfig(path string, getenv func(string) string) (*config.Config, []string, []string, error) {
	recorded, used := config.RecordLookups(getenv)
	var (
		cfg      *config.Config
		warnings []string
		err      error
	)
	if path == "" {
		cfg, warnings, err = config.FromEnv(recorded)
	} else {
		cfg, warnings, err = config.Load(path, recorded)
	}
	return cfg, warnings, config.IgnoredEnv(getenv, used), err
}

// logIgnoredEnv writes one startup warning per unused variable: a setting
// carried over from an older service must never be dropped silently.
func logIgnoredEnv(log *slog.Logger, ignored []string) {
	for _, w := range ignored {
		log.Warn("environment variable not used", "problem", w)
	}
}
