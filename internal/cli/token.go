package cli

import (
	"context"
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/openpaygo"
)

// tokenCommand is `licet token`: the OpenPAYGO Token codec on the command
// line, for scripts and for other vendors' tooling. Its flags are fixed by
// issue 8; change them only compatibly.
func tokenCommand() *command {
	return &command{name: "token", summary: "encode and decode OpenPAYGO tokens (offline keypad credit)", sub: []*command{
		leaf("encode", "make the token that gives a device credit", tokenEncode),
		leaf("decode", "check a token as the device would", tokenDecode),
	}}
}

// tokenDeviceFlags are the flags naming a device and the token form, shared
// by encode and decode.
type tokenDeviceFlags struct {
	key                  *string
	startingCode, count  *int64
	extended, restricted *bool
	asJSON               *bool
}

// addTokenKeyFlags adds --key and --starting-code, which name a device.
func addTokenKeyFlags(fs *flag.FlagSet) (key *string, startingCode *int64) {
	return fs.String("key", "", "the device's secret key, 32 hexadecimal digits (default: $LICET_TOKEN_KEY, which keeps it out of the process list)"),
		fs.Int64("starting-code", -1, "the device's starting code, up to 9 digits")
}

func addTokenDeviceFlags(fs *flag.FlagSet) *tokenDeviceFlags {
	key, startingCode := addTokenKeyFlags(fs)
	return &tokenDeviceFlags{
		key:          key,
		startingCode: startingCode,
		count:        fs.Int64("count", -1, "the device's last count (encode: the last count issued; decode: the last count the device accepted)"),
		extended:     fs.Bool("extended", false, "12-digit tokens carrying values up to 999,999"),
		restricted:   fs.Bool("restricted", false, "tokens written with the digits 1-4 only"),
		asJSON:       fs.Bool("json", false, "print the result as JSON"),
	}
}

// device checks the flags and returns the device they name and its count.
func (f *tokenDeviceFlags) device(e *env, cmd string) (openpaygo.Device, uint32, error) {
	d, err := tokenDevice(e, cmd, *f.key, *f.startingCode)
	if err != nil {
		return d, 0, err
	}
	if *f.count < 0 || *f.count > math.MaxUint32 {
		return d, 0, errs.E(errs.Usage, "%s: --count is required: the device's last count, 0 to %d", cmd, uint32(math.MaxUint32))
	}
	return d, uint32(*f.count), nil
}

// tokenDevice checks the values of --key (or $LICET_TOKEN_KEY) and
// --starting-code and returns the device they name.
func tokenDevice(e *env, cmd, hexKey string, startingCode int64) (openpaygo.Device, error) {
	if hexKey == "" {
		hexKey = e.getenv("LICET_TOKEN_KEY")
	}
	if hexKey == "" {
		return openpaygo.Device{}, errs.E(errs.Usage, "%s: --key is required (or $LICET_TOKEN_KEY): the device's 32-hex-digit secret key", cmd)
	}
	k, err := openpaygo.ParseKey(hexKey)
	if err != nil {
		return openpaygo.Device{}, errs.E(errs.Usage, "%s: --key: %v", cmd, err)
	}
	if startingCode < 0 || startingCode > openpaygo.MaxStartingCode {
		return openpaygo.Device{}, errs.E(errs.Usage, "%s: --starting-code is required: the device's starting code, 0 to %d", cmd, openpaygo.MaxStartingCode)
	}
	return openpaygo.Device{Key: k, StartingCode: uint32(startingCode)}, nil
}

func tokenEncode(ctx context.Context, e *env, args []string) error {
	const cmd = "licet token encode"
	fs := flagSet(e, cmd, "--key HEX --starting-code N --count C --type ADD_TIME|SET_TIME|DISABLE_PAYG|COUNTER_SYNC [--value V] [--extended] [--restricted] [--json]",
		"Prints the OpenPAYGO token that moves a device from count C to its next count.\n"+
			"ADD_TIME and SET_TIME carry --value (days times the device's time divider): 0 to 995,\n"+
			"or to 999,999 with --extended. The result matches the reference implementation bit for bit.\n"+
			"With --json: {\"token\": \"...\", \"new_count\": N}.")
	df := addTokenDeviceFlags(fs)
	typeName := fs.String("type", "", "ADD_TIME, SET_TIME, DISABLE_PAYG or COUNTER_SYNC")
	value := fs.Int64("value", -1, "the amount, for ADD_TIME and SET_TIME")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	d, count, err := df.device(e, cmd)
	if err != nil {
		return err
	}
	if *typeName == "" {
		return errs.E(errs.Usage, "%s: --type is required: ADD_TIME, SET_TIME, DISABLE_PAYG or COUNTER_SYNC", cmd)
	}
	typ, err := openpaygo.ParseType(*typeName)
	if err != nil {
		return errs.E(errs.Usage, "%s: --type: %v", cmd, err)
	}
	v := 0
	switch typ {
	case openpaygo.AddTime, openpaygo.SetTime:
		limit, hint := int64(openpaygo.MaxValue), " (--extended carries up to 999,999)"
		if *df.extended {
			limit, hint = openpaygo.MaxExtendedValue, ""
		}
		if *value < 0 || *value > limit {
			return errs.E(errs.Usage, "%s: --value is required for %s and must be 0 to %d%s, got %d", cmd, typ, limit, hint, *value)
		}
		v = int(*value)
	default:
		if *value != -1 {
			return errs.E(errs.Usage, "%s: --value is not allowed for %s", cmd, typ)
		}
	}
	tok, newCount, err := openpaygo.Encode(d, count, typ, v, openpaygo.Options{Extended: *df.extended, Restricted: *df.restricted})
	if err != nil {
		return errs.Wrap(errs.Usage, err, "%s", cmd)
	}
	if *df.asJSON {
		return printJSON(e.stdout, struct {
			Token    string `json:"token"`
			NewCount uint32 `json:"new_count"`
		}{tok, newCount})
	}
	fmt.Fprintln(e.stdout, tok)
	return nil
}

func tokenDecode(ctx context.Context, e *env, args []string) error {
	const cmd = "licet token decode"
	fs := flagSet(e, cmd, "--key HEX --starting-code N --count C [--used-counts 1,2,3] [--extended] [--restricted] [--json] TOKEN",
		"Decodes TOKEN as the device would at last count C with the given used counts, and\n"+
			"prints its status, type, value and count. Exit 0 valid, 3 already used or invalid.\n"+
			"The token's length tells standard from extended; --extended is accepted for symmetry\n"+
			"with encode and checked against it. With --json:\n"+
			"{\"status\": \"valid\"|\"already_used\"|\"invalid\", \"type\": ..., \"value\": V or null, \"count\": N}.")
	df := addTokenDeviceFlags(fs)
	usedText := fs.String("used-counts", "", "counts the device has marked used, comma-separated")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	d, count, err := df.device(e, cmd)
	if err != nil {
		return err
	}
	used, err := parseCounts(*usedText)
	if err != nil {
		return errs.E(errs.Usage, "%s: --used-counts: %v", cmd, err)
	}
	token := fs.Arg(0)
	res, err := openpaygo.Decode(d, token, count, used, *df.restricted)
	if err != nil {
		return errs.E(errs.Usage, "%s: TOKEN: %v", cmd, err)
	}
	if *df.extended && !res.Extended {
		return errs.E(errs.Usage, "%s: TOKEN: --extended given, but %q is a standard token", cmd, token)
	}
	out := struct {
		Status string  `json:"status"`
		Type   *string `json:"type"`
		Value  *int    `json:"value"`
		Count  uint32  `json:"count"`
	}{Status: res.Status.String(), Count: count}
	if res.Status == openpaygo.Valid {
		name := res.Type.String()
		out.Type, out.Count = &name, res.Count
		if res.Type == openpaygo.AddTime || res.Type == openpaygo.SetTime {
			out.Value = &res.Value
		}
	}
	if *df.asJSON {
		if err := printJSON(e.stdout, out); err != nil {
			return err
		}
	} else if res.Status == openpaygo.Valid {
		if out.Value != nil {
			fmt.Fprintf(e.stdout, "valid %s value %d count %d\n", res.Type, res.Value, res.Count)
		} else {
			fmt.Fprintf(e.stdout, "valid %s count %d\n", res.Type, res.Count)
		}
	}
	switch res.Status {
	case openpaygo.AlreadyUsed:
		err = errs.E(errs.Invalid, "token %s is a real token of this device, but already used or older than the window at count %d", token, count)
	case openpaygo.Invalid:
		err = errs.E(errs.Invalid, "token %s is not valid for this device at count %d: a typing error, another device's token, or one too far ahead (a counter-sync token resynchronises)", token, count)
	}
	if err != nil && *df.asJSON {
		return &reportedError{err}
	}
	return err
}

// parseCounts reads a comma-separated list of counts.
func parseCounts(s string) ([]uint32, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []uint32
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%q is not a count (0 to %d)", f, uint32(math.MaxUint32))
		}
		out = append(out, uint32(n))
	}
	return out, nil
}
