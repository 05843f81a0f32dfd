package server

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/portcullis/portcullis/config"
)

// ReloadOptions say where a reload reads the configuration from. main sets
// them with EnableReload; a Server without them cannot reload.
type ReloadOptions struct {
	// Load reads and validates the whole configuration again (file,
	// environment, key files), as at startup.
	Load func() (*config.Config, []string, error)
	// File is the configuration file, watched for changed contents with the
	// files it names; "" when the configuration comes from the environment
	// alone (the files it names are still watched).
	File string
	// Getenv is the environment the configuration is expanded from; the
	// watcher uses it to find the files a refused configuration names.
	Getenv func(string) string
	// Signals carries SIGHUP; each value received reloads once.
	Signals <-chan os.Signal
	// Level, when set, is the logger's level: a reload applies log.level.
	Level *slog.LevelVar
}

// ReloadHook lets a long-lived component (a TLS certificate source, say)
// take part in a reload. It prepares what it needs from the new
// configuration without applying it and returns commit, which applies it;
// commit runs only when every part of the reload succeeded, right after the
// new runtime is installed. An error fails the whole reload: the running
// configuration keeps serving and the error is logged with the others.
type ReloadHook func(next *config.Config) (commit func(), err error)

// reloader is the Server's reload state.
type reloader struct {
	mu    sync.Mutex // one reload at a time; guards the fields below
	opts  ReloadOptions
	hooks []ReloadHook
	bg    context.Context // Run's background context; nil when not running
	// watch holds the watched files' fingerprints, taken when reload is
	// enabled: a change made after that, even before the watch goroutine
	// first runs, is a change.
	watch *watcher
}

// EnableReload makes the server reload on SIGHUP and when watched files
// change (reload.watch_interval). Call it before Run.
func (s *Server) EnableReload(o ReloadOptions) {
	s.reload.mu.Lock()
	defer s.reload.mu.Unlock()
	s.reload.opts = o
	if o.Load != nil {
		w := &watcher{file: o.File, seen: map[string]fingerprint{}}
		w.record(w.paths(s.current().cfg))
		s.reload.watch = w
	}
	if o.Level != nil {
		s.setLevel(s.cfg)
	}
}

// OnReload adds a hook to every later reload, in the order added.
func (s *Server) OnReload(h ReloadHook) {
	s.reload.mu.Lock()
	defer s.reload.mu.Unlock()
	s.reload.hooks = append(s.reload.hooks, h)
}

// errNoSource is what Reload says when EnableReload was never called.
var errNoSource = errors.New("reload: no configuration source (EnableReload was not called)")

// Reload loads and validates the whole configuration again. When it is
// valid, a complete new runtime replaces the running one at once; settings
// that need a restart (listeners, Redis) are logged and left as they are,
// and the rest applies. When it is not, every problem is logged and the
// running configuration keeps serving unchanged. trigger ("signal",
// "file") goes into the log. Reloads never run concurrently.
func (s *Server) Reload(trigger string) error {
	s.reload.mu.Lock()
	defer s.reload.mu.Unlock()
	return s.reloadLocked(trigger)
}

func (s *Server) reloadLocked(trigger string) error {
	load := s.reload.opts.Load
	if load == nil {
		return errNoSource
	}
	prev := s.current()
	next, warnings, err := load()
	var rt *runtime
	if err == nil {
		var w []string
		rt, w, err = s.build(next, prev)
		warnings = append(warnings, w...)
	}
	var commits []func()
	if err == nil {
		var errs []error
		for _, h := range s.reload.hooks {
			commit, herr := h(next)
			if herr != nil {
				errs = append(errs, herr)
				continue
			}
			if commit != nil {
				commits = append(commits, commit)
			}
		}
		err = errors.Join(errs...)
	}
	if err != nil {
		if rt != nil {
			rt.stop() // never started; releases what New allocated
		}
		s.reloadFailed(trigger, err)
		return err
	}
	for _, w := range warnings {
		s.log.Warn("configuration warning", "problem", w)
	}
	restart := config.NeedsRestart(s.cfg, next)
	restart = append(restart, s.processWide(next)...)
	for _, key := range restart {
		s.log.Warn("configuration change needs a restart; it is not applied until then", "key", key, "trigger", trigger)
	}
	if s.reload.bg != nil {
		rt.start(s.reload.bg)
	}
	s.rt.Store(rt)
	for _, c := range commits {
		c()
	}
	prev.stop()
	s.setLevel(next)
	args := []any{"trigger", trigger}
	if len(restart) > 0 {
		args = append(args, "restart_needed", strings.Join(restart, ","))
	}
	s.log.Info("configuration reloaded", args...)
	// The metrics move last: whoever sees them has the logs and the new
	// configuration too.
	s.metrics.ReloadResult(true)
	return nil
}

// reloadFailed logs every problem, one line each, then a summary.
func (s *Server) reloadFailed(trigger string, err error) {
	problems := 0
	for _, line := range strings.Split(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			problems++
			s.log.Error("configuration refused", "problem", line, "trigger", trigger)
		}
	}
	s.log.Error("configuration reload failed; the running configuration keeps serving unchanged",
		"trigger", trigger, "problems", problems, "security_event", true)
	s.metrics.ReloadResult(false)
}

// processWide lists the settings outside config.RestartKeys that this
// process also fixes at startup: the logger's format and the limiter's
// failure policy live as long as the process (the limiter's state must
// survive a reload).
func (s *Server) processWide(next *config.Config) []string {
	var out []string
	if next.Log.Format != s.cfg.Log.Format {
		out = append(out, "log.format")
	}
	if (next.TLS == nil) != (s.cfg.TLS == nil) {
		out = append(out, "tls") // HTTPS or plain HTTP is the listener's mode
	}
	if next.RateLimit.OnRedisFailure != s.cfg.RateLimit.OnRedisFailure {
		out = append(out, "rate_limit.on_redis_failure")
	}
	return out
}

// setLevel applies log.level when main handed over the logger's level.
func (s *Server) setLevel(cfg *config.Config) {
	if lv := s.reload.opts.Level; lv != nil {
		var l slog.Level
		if l.UnmarshalText([]byte(cfg.Log.Level)) == nil {
			lv.Set(l)
		}
	}
}
