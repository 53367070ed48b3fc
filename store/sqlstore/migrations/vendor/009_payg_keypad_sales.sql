-- A sale of a plan to a keypad device (licet vendor sell --keypad-device S)
-- issues the device's OpenPAYGO token in the sale's transaction; the sale
-- names the device here (device_id stays for connected devices).
ALTER TABLE v_payg_sales ADD COLUMN keypad_device TEXT REFERENCES v_keypad_devices(serial);
