// Package redistest runs a real redis-server for tests: on a free loopback
// port, without persistence, stopped by PID when the test ends. Where the
// binary is missing the test is skipped, except under CI=true, where it
// fails: CI must never pass by silently skipping.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is one redis-server process. Not safe for concurrent use.
type Server struct {
	Addr string
	port int
	bin  string
	cmd  *exec.Cmd
}

// Require skips (or, under CI=true, fails) when name is not installed, and
// returns its path.
func Require(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"} {
		if _, err := os.Stat(dir + "/" + name); err == nil {
			return dir + "/" + name
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; CI needs it (make test installs it)", name)
	}
	t.Skipf("%s is not installed; run make test to install it", name)
	return ""
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs redis-server and waits until it answers PING.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{bin: Require(t, "redis-server"), port: FreePort(t)}
	s.Addr = "127.0.0.1:" + strconv.Itoa(s.port)
	s.start(t)
	t.Cleanup(s.Kill)
	return s
}

// URL is the redis:// URL of the server.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

func (s *Server) start(t testing.TB) {
	t.Helper()
	s.cmd = exec.Command(s.bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning")
	// Output is discarded: Redis warns about overcommit on every start.
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s.ping() == nil {
			return
		}
		time.Sleep(20 * time.Millisecond) // polling readiness, not waiting for time to pass
	}
	s.Kill()
	t.Fatalf("redis-server on %s did not answer PING within 10s", s.Addr)
}

func (s *Server) ping() error {
	line, err := command(s.Addr, "PING")
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// Kill ends the process this package started (by PID) and waits for it.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts a new server on the same port (empty: no persistence).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	s.start(t)
}

// Pause freezes the process (SIGSTOP): connections stay open but nothing
// answers, the worst case for timeouts. Resume undoes it.
func (s *Server) Pause() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// StartSentinel runs a Sentinel (redis-server --sentinel) that monitors
// master under the given name, and waits until it reports the master.
func StartSentinel(t testing.TB, master *Server, name string) string {
	t.Helper()
	bin := Require(t, "redis-server")
	port := FreePort(t)
	dir := t.TempDir()
	conf := dir + "/sentinel.conf"
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\nsentinel monitor %s %s 1\n", port, dir, name, strings.Replace(master.Addr, ":", " ", 1))
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sentinel: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if reply, err := command(addr, "SENTINEL get-master-addr-by-name "+name); err == nil && strings.Contains(reply, "*2") {
			return addr
		}
		time.Sleep(20 * time.Millisecond) // polling readiness
	}
	t.Fatalf("sentinel on %s does not report %s", addr, name)
	return ""
}

// command sends one inline command and returns the first reply line.
func command(addr, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := fmt.Fprint(c, cmd+"\r\n"); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

// StartCluster runs three cluster-mode redis-servers, joins them with
// redis-cli --cluster create (no replicas), and waits until the cluster
// reports ok. It returns the nodes' addresses.
func StartCluster(t testing.TB) []string {
	t.Helper()
	bin := Require(t, "redis-server")
	cli := Require(t, "redis-cli")
	var addrs []string
	for i := 0; i < 3; i++ {
		port := FreePort(t)
		dir := t.TempDir()
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--protected-mode", "no",
			"--cluster-enabled", "yes", "--cluster-config-file", dir+"/nodes.conf", "--dir", dir,
			"--save", "", "--appendonly", "no")
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting cluster node: %v", err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		addr := "127.0.0.1:" + strconv.Itoa(port)
		waitReply(t, addr, "PING", "+PONG")
		addrs = append(addrs, addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range addrs {
		waitReply(t, a, "CLUSTER INFO", "$") // bulk reply; then check state below
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, _ := exec.Command(cli, "-h", "127.0.0.1", "-p", strings.Split(a, ":")[1], "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ok: %s", a, out)
			}
			time.Sleep(50 * time.Millisecond) // polling readiness
		}
	}
	return addrs
}

func waitReply(t testing.TB, addr, cmd, prefix string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if line, err := command(addr, cmd); err == nil && strings.HasPrefix(line, prefix) {
			return
		}
		time.Sleep(20 * time.Millisecond) // polling readiness
	}
	t.Fatalf("%s did not answer %q", addr, cmd)
}
