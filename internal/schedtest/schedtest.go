// Package schedtest measures scheduler lateness for tests that bound wall
// time: on a busy machine a call's wall time includes waiting for a CPU,
// which no timeout or propagation promise can bound.
package schedtest

import "time"

// Lag starts measuring how late a goroutine that sleeps 1 ms at a time
// wakes up; the returned stop ends the measurement and returns the worst
// lateness seen. Measuring starts only once the goroutine runs: a starved
// process may not schedule it before the measured call is over.
func Lag() (stop func() time.Duration) {
	done := make(chan struct{})
	worst := make(chan time.Duration, 1)
	running := make(chan struct{})
	go func() {
		var w time.Duration
		close(running)
		for {
			select {
			case <-done:
				worst <- w
				return
			default:
			}
			start := time.Now()
			time.Sleep(time.Millisecond)
			w = max(w, time.Since(start)-time.Millisecond)
		}
	}()
	<-running
	return func() time.Duration { close(done); return <-worst }
}
