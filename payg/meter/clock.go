package meter

import (
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Clock is where the meter reads time. Use is measured with Boot, which no
// user can set; Wall is only believed within the bounds the meter keeps (see
// Status.Clock). Tests inject a fake.
type Clock interface {
	// Wall is the system's wall-clock time, which the device's user controls.
	Wall() time.Time
	// Boot is the time since this boot, counting suspend (CLOCK_BOOTTIME),
	// and an ID that differs on every boot.
	Boot() (bootID string, sinceBoot time.Duration)
}

// SystemClock is the real clock: time.Now for the wall, CLOCK_BOOTTIME and
// /proc/sys/kernel/random/boot_id for the boot clock.
type SystemClock struct{}

var (
	bootIDOnce sync.Once
	bootID     string
)

// Wall returns time.Now.
func (SystemClock) Wall() time.Time { return time.Now() }

// Boot returns the boot ID and CLOCK_BOOTTIME.
func (SystemClock) Boot() (string, time.Duration) {
	bootIDOnce.Do(func() {
		b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
		if err == nil {
			bootID = strings.TrimSpace(string(b))
		}
		if bootID == "" {
			// No boot ID: every process counts as a boot of its own, which
			// only ever loses metering (a reboot's worth), never adds it.
			bootID = "process-" + time.Now().Format(time.RFC3339Nano)
		}
	})
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		// CLOCK_BOOTTIME exists since Linux 2.6.39; fall back to the
		// process's monotonic clock, which excludes suspend.
		return bootID, time.Since(processStart)
	}
	return bootID, time.Duration(ts.Nano())
}

var processStart = time.Now()

// FakeClock is a Clock for tests: the wall and the boot clock move only when
// told.
type FakeClock struct {
	mu     sync.Mutex
	wall   time.Time
	bootID string
	boot   time.Duration
}

// NewFakeClock returns a fake clock at wall time wall, just after boot "boot-1".
func NewFakeClock(wall time.Time) *FakeClock {
	return &FakeClock{wall: wall, bootID: "boot-1", boot: time.Minute}
}

// Wall returns the fake wall time.
func (c *FakeClock) Wall() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

// Boot returns the fake boot ID and time since boot.
func (c *FakeClock) Boot() (string, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bootID, c.boot
}

// Advance moves both clocks forward by d, as real time passing does.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall = c.wall.Add(d)
	c.boot += d
}

// SetWall sets the wall clock alone, as a user with date(1) does.
func (c *FakeClock) SetWall(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall = t
}

// Reboot starts a new boot: a new boot ID and the boot clock near zero. The
// wall clock moves forward by off, the time the device was off.
func (c *FakeClock) Reboot(off time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bootID += "+"
	c.boot = 10 * time.Second
	c.wall = c.wall.Add(off)
}
