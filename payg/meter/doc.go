// Package meter is the device side of pay-as-you-go: it keeps the credit a
// device was sold, meters its use with a clock the user cannot wind back, and
// says whether the device may be used.
//
// State. Everything the meter knows is an append-only log (meter.log) in the
// agent's payg directory: the registration, every packet applied, every
// interval of use, every clock anchor and sync. Each record is one line,
// fsynced before the operation that wrote it returns, and carries an
// HMAC-SHA256 under a device-local key (meter.key, mode 0600) over the
// previous record's MAC and its own bytes, so records cannot be edited,
// reordered or removed from the middle. A head file (meter.head, under the
// same key) names the last record, so a truncated log is seen; a registered
// device without its log, head or key is seen too. A log that fails any of
// these checks gives no credit at all (state "tampered") and the status says
// why. A record is written with one write and synced before the head moves,
// so a process killed at any point leaves either the old state or the new
// one: a packet is applied once or not at all, and applying it again after
// the crash is either accepted (it was not applied) or refused as a replay.
//
// What the device cannot see. Its owner controls it (DESIGN.md 5b): an older
// copy of the whole directory, restored, is a consistent older state. The
// device reports its highest sequence and total use at every sync, and the
// vendor flags a device whose report goes backwards.
//
// Packets are applied only in sequence order: the next sequence or nothing;
// a replayed packet, one of another device, one changed in transit or one
// signed by a key the vendor root did not certify is refused (package
// payg/packet checks the signature chain and the device).
//
// Clock. Use is measured with the boot clock (CLOCK_BOOTTIME), not the wall
// clock. Every record carries the meter's trusted time and the boot clock at
// the time of writing. Within one boot the trusted time is the last anchor
// plus the boot clock's progress, whatever the wall clock says. At the first
// record of a new boot the meter takes the wall clock, bounded below by the
// last trusted time (a clock set back gains nothing) and above by the last
// trusted time plus MaxForwardJump (default 48 h; a clock set a year ahead
// moves the meter's time by at most that per boot). Each packet's signed
// server time re-anchors the trusted time forward, never backward. Use is
// recorded every tick, so a reboot loses at most one tick of metering.
//
// Use. Time is consumed only while someone uses the device: a user session
// (see Sessions) observed by the daemon, or a program started through
// Supervise ('licet agent run'). Several meters running at once on one boot
// never charge the same boot-clock interval twice. A plan "until a date"
// covers use up to that date without drawing down seconds of credit.
package meter
