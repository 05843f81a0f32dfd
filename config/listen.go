package config

import (
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"
)

// Listeners returns the listen and admin_listen addresses, with their
// defaults and BIND_ADDR / ADMIN_BIND_ADDR applied, reading nothing else:
// -health-check runs every few seconds and must not load keys, hash
// CLIENT_SECRET or fail because a secret it does not need is missing.
// path "" means the environment-only configuration. admin "" means the
// admin endpoints are served on listen.
func Listeners(path string, getenv func(string) string) (listen, admin string, err error) {
	l, err := ProbeTarget(path, getenv)
	return l.Listen, l.Admin, err
}

// Probe is where -health-check finds the process: the listen and
// admin_listen addresses, and whether listen serves HTTPS (tls is set).
type Probe struct {
	Listen, Admin string
	TLS           bool
}

// ProbeTarget is Listeners plus whether a tls block is configured, read
// just as cheaply (no key, certificate or secret is loaded).
func ProbeTarget(path string, getenv func(string) string) (Probe, error) {
	var data []byte
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return Probe{}, fmt.Errorf("reading config: %w", err)
		}
		defer f.Close()
		if data, err = io.ReadAll(io.LimitReader(f, maxConfigBytes)); err != nil {
			return Probe{}, fmt.Errorf("reading config %s: %w", path, err)
		}
	}
	listen, admin, tls, err := listenersFrom(data, getenv)
	return Probe{Listen: listen, Admin: admin, TLS: tls}, err
}

// listenersFrom reads listen and admin_listen from a configuration
// document (nil: none) and applies the defaults and the environment.
func listenersFrom(data []byte, getenv func(string) string) (listen, admin string, tls bool, err error) {
	var doc struct {
		Listen      *string   `yaml:"listen"`
		AdminListen *string   `yaml:"admin_listen"`
		TLS         yaml.Node `yaml:"tls"`
	}
	// Unknown keys are fine here: the server validated the whole file.
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", "", false, fmt.Errorf("config is not valid YAML: %w", err)
	}
	cfg := &Config{}
	if doc.Listen != nil {
		if cfg.Listen, err = expand(*doc.Listen, getenv); err != nil {
			return "", "", false, fmt.Errorf("listen: %w", err)
		}
	}
	if doc.AdminListen != nil {
		a, err := expand(*doc.AdminListen, getenv)
		if err != nil {
			return "", "", false, fmt.Errorf("admin_listen: %w", err)
		}
		cfg.AdminListen = &a
	}
	if v := getenv("BIND_ADDR"); v != "" {
		cfg.Listen = v
	}
	if v, ok := lookup(getenv, "ADMIN_BIND_ADDR"); ok {
		cfg.AdminListen = &v
	}
	if cfg.Listen == "" {
		cfg.Listen = ":8080"
	}
	tls = doc.TLS.Kind == yaml.MappingNode
	return cfg.Listen, cfg.AdminAddr(), tls, nil
}
