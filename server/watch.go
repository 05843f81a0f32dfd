package server

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"time"

	"github.com/portcullis/portcullis/config"
)

// maxWatchedBytes bounds how much of one watched file is read per poll: a
// config, a key or a CA bundle is far smaller; a path pointed at something
// huge must not turn each poll into a long read.
const maxWatchedBytes = 8 << 20

// fingerprint is a file's contents hashed; missing or unreadable files
// have the zero value, so their appearance counts as a change.
type fingerprint [sha256.Size]byte

// watch reloads on SIGHUP and, every reload.watch_interval, when the
// configuration file or a file it names (keys, certificates) has different
// contents. Contents, not modification times or inodes: Kubernetes updates
// ConfigMap and Secret volumes by swapping a "..data" symlink, which leaves
// the paths' own metadata meaningless. The interval is read again after
// every poll, so reloading it applies too. It returns when ctx ends.
func (s *Server) watch(ctx context.Context) {
	s.reload.mu.Lock()
	opts, w := s.reload.opts, s.reload.watch
	s.reload.mu.Unlock()
	if opts.Load == nil || w == nil {
		return
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var tick <-chan time.Time
		if d := s.current().cfg.Reload.Interval(); d > 0 {
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-opts.Signals:
			w.reload(s, "signal", opts.Getenv)
		case <-tick:
			if w.changed(s.current().cfg) {
				w.reload(s, "file", opts.Getenv)
			}
		}
	}
}

// watcher remembers the fingerprints of the watched files as of the last
// reload attempt. Only the watch goroutine uses it.
type watcher struct {
	file string
	seen map[string]fingerprint
	// pending are the files a refused configuration names: watched too, so
	// that a key file that arrives after the config that names it (two
	// volumes updated one after the other) triggers the retry.
	pending []string
}

// paths are the files to watch for a running configuration.
func (w *watcher) paths(cfg *config.Config) []string {
	var out []string
	if w.file != "" {
		out = append(out, w.file)
	}
	out = append(out, cfg.Files()...)
	return append(out, w.pending...)
}

// changed reports whether any watched file's contents differ from the last
// attempt, and records the new fingerprints (so one change is one reload).
func (w *watcher) changed(cfg *config.Config) bool {
	changed := false
	for _, p := range w.paths(cfg) {
		fp := hashFile(p)
		if old, ok := w.seen[p]; !ok || old != fp {
			changed = true
		}
		w.seen[p] = fp
	}
	return changed
}

// record fingerprints the files not seen yet. Files already seen keep the
// fingerprint taken before the reload read them: if one changed while the
// reload ran, the next poll notices.
// Files no longer watched are forgotten.
func (w *watcher) record(paths []string) {
	seen := make(map[string]fingerprint, len(paths))
	for _, p := range paths {
		fp, ok := w.seen[p]
		if !ok {
			fp = hashFile(p)
		}
		seen[p] = fp
	}
	w.seen = seen
}

// reload runs one reload and updates what is watched.
func (w *watcher) reload(s *Server, trigger string, getenv func(string) string) {
	if trigger == "signal" {
		w.changed(s.current().cfg) // a SIGHUP'd change is not reloaded twice
	}
	if err := s.Reload(trigger); err != nil {
		if w.file != "" {
			if files, ferr := config.LoadFiles(w.file, getenv); ferr == nil {
				w.pending = files
				// A file first named by the refused configuration counts
				// as missing, not as whatever it holds now: it may have
				// arrived after the reload read it, and that arrival must
				// trigger the retry. (A file that was there but invalid
				// costs one more refused attempt.)
				for _, f := range files {
					if _, ok := w.seen[f]; !ok {
						w.seen[f] = fingerprint{}
					}
				}
			}
		}
	} else {
		w.pending = nil
	}
	w.record(w.paths(s.current().cfg))
}

func hashFile(path string) fingerprint {
	f, err := os.Open(path)
	if err != nil {
		return fingerprint{}
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, maxWatchedBytes)); err != nil {
		return fingerprint{}
	}
	var fp fingerprint
	h.Sum(fp[:0])
	return fp
}
