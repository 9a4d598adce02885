package upstreamtier

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// lifecycle is the plugin's lifetime as its probes and client attempts
// see it: started with the plugin, interrupted on a reload and when no
// tier is available, ended on shutdown.
type lifecycle struct {
	mu      sync.Mutex
	stopped bool
	stop    chan struct{}  // closed on shutdown: probes end
	probes  sync.WaitGroup // running probe goroutines

	// The plugin's lifetime, ended on shutdown: probes wait on the network
	// only until then, client attempts until shutdownGrace later. closing
	// is set first, so that what the ending interrupts is not taken for
	// evidence about an upstream.
	once     sync.Once
	life     context.Context
	endLife  context.CancelFunc
	attempts atomic.Pointer[attemptContext] // replaced on reload and all down, see endAttempts
	closing  atomic.Bool
}

func newLifecycle() *lifecycle { return &lifecycle{stop: make(chan struct{})} }

// attemptContext is the context of the client attempts of one period.
type attemptContext struct {
	ctx context.Context
	end context.CancelCauseFunc
}

func newAttemptContext() *attemptContext {
	ctx, end := context.WithCancelCause(context.Background())
	return &attemptContext{ctx, end}
}

// endLater ends the attempts of the period shutdownGrace from now.
func (ac *attemptContext) endLater() {
	time.AfterFunc(shutdownGrace, func() { ac.end(errAbandoned) })
}

// shutdownGrace is how long the client attempts in flight at shutdown
// may still wait for their answers; probes end at once.
const shutdownGrace = 500 * time.Millisecond

// probeLife returns the context of probes, which shutdown cancels.
func (lc *lifecycle) probeLife() context.Context {
	lc.once.Do(lc.begin)
	return lc.life
}

// attemptLife returns the context of client attempts, which ends
// shutdownGrace after shutdown.
func (lc *lifecycle) attemptLife() context.Context {
	lc.once.Do(lc.begin)
	return lc.attempts.Load().ctx
}

func (lc *lifecycle) begin() {
	lc.life, lc.endLife = context.WithCancel(context.Background())
	lc.attempts.Store(newAttemptContext())
}

// interruptAttempts ends the client attempts in flight shutdownGrace from
// now; later ones get a new context. On a reload CoreDNS waits for the old
// server's queries (up to 5 s) before it calls OnShutdown, so the queries
// waiting on a silent upstream are ended here, when the reload begins; the
// plugin itself goes on, in case the new Corefile is refused.
func (lc *lifecycle) interruptAttempts() {
	lc.once.Do(lc.begin)
	lc.attempts.Swap(newAttemptContext()).endLater()
}

// endAttempts ends the client attempts in flight now, with the cause
// given; later ones get a new context. When no tier is available, every
// attempt in flight is on an upstream that is down, and its query gets the
// immediate SERVFAIL the new ones get, instead of waiting for an attempt
// that a transport runs in the query's goroutine.
func (lc *lifecycle) endAttempts(cause error) {
	lc.once.Do(lc.begin)
	lc.attempts.Swap(newAttemptContext()).end(cause)
}

// goProbe runs probe in a goroutine that shutdown waits for, unless the
// plugin is shutting down: attempts still in flight may report a failure
// then. It reports whether the goroutine started.
func (lc *lifecycle) goProbe(probe func()) bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.stopped {
		return false
	}
	lc.probes.Go(probe)
	return true
}

// shutdown ends every probe loop and every probe in flight, and waits for
// them: a probe waiting on an upstream is interrupted, so this never waits
// on the network. Client attempts are given shutdownGrace.
func (lc *lifecycle) shutdown() {
	lc.once.Do(lc.begin)
	lc.closing.Store(true)
	lc.mu.Lock()
	if !lc.stopped {
		lc.stopped = true
		close(lc.stop)
		lc.attempts.Load().endLater()
	}
	lc.mu.Unlock()
	lc.endLife()
	lc.probes.Wait()
}

// sleep waits for d and reports whether the plugin is still running.
func (lc *lifecycle) sleep(d time.Duration) bool {
	if d <= 0 {
		select {
		case <-lc.stop:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-lc.stop:
		return false
	case <-t.C:
		return true
	}
}
