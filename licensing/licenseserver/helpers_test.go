package licenseserver_test

import "github.com/licet/licet/armor"

func decodeRequest(armored []byte) ([]byte, error) {
	blk, err := armor.Decode(armored, armor.TypeCertRequest)
	return blk.Body, err
}
