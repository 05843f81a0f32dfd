package server

import (
	"encoding/json"
	"net/http"
)

type check struct {
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// health reports each dependency. A Redis outage is "degraded", not
// "unhealthy": replicas keep serving with local limits, and one Redis blip
// must not pull every replica out of the load balancer.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	checks := map[string]check{
		"keys":   {Status: "ok"},
		"routes": {Status: "ok"},
	}
	status, code := "healthy", http.StatusOK
	if s.redis != nil {
		if s.limiter.Degraded() {
			checks["redis"] = check{Status: "down", Detail: "rate limits follow on_redis_failure=" + s.cfg.RateLimit.OnRedisFailure + "; revocations cannot be recorded"}
			status = "degraded"
		} else {
			checks["redis"] = check{Status: "ok"}
		}
	}
	if !s.started.Load() || s.draining.Load() {
		status, code = "unhealthy", http.StatusServiceUnavailable
		checks["server"] = check{Status: "down", Detail: "starting or shutting down"}
	} else if !s.backendsReady() {
		status, code = "unhealthy", http.StatusServiceUnavailable
		checks["server"] = check{Status: "down", Detail: "starting: reading the replica count and the revocations recorded in redis"}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": status, "checks": checks})
}

func probe(w http.ResponseWriter, ok bool) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"unavailable"}` + "\n"))
		return
	}
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

func (s *Server) live(w http.ResponseWriter, r *http.Request) { probe(w, true) }

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	probe(w, s.started.Load() && !s.draining.Load() && s.backendsReady() && s.current().issuer.Ready())
}

func (s *Server) startup(w http.ResponseWriter, r *http.Request) { probe(w, s.started.Load()) }
