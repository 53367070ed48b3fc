package loadgen

import "testing"

// licenseID reads the ID from the first field of a grant answer, where the
// site writes it, and decodes other spellings; garbage is an error.
func TestLicenseID(t *testing.T) {
	for in, want := range map[string]int64{
		`{"license_id":42,"reissued":false,"temporary":false,"license":"-----BEGIN LICET LICENSE-----\n..."}`: 42,
		`{"reissued":true,"license_id":7,"license":""}`:                                                       7,
		`{"license_id": 9 ,"license":""}`:                                                                     9,
	} {
		if got, err := licenseID([]byte(in)); err != nil || got != want {
			t.Errorf("licenseID(%s) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{`{"license_id":`, `not json`, `{"license_id":"x"}`} {
		if _, err := licenseID([]byte(in)); err == nil {
			t.Errorf("licenseID(%s) gave no error", in)
		}
	}
}
