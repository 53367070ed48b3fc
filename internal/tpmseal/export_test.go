package tpmseal

// OpenTPM opens a TPM for tests that act as the device's owner.
var OpenTPM = open
