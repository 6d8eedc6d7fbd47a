package router

// SlotCount is the number of hash slots in a Redis Cluster.
const SlotCount = 16384

// crc16tab is the CRC16-CCITT (XModem) table Redis Cluster uses for key slots.
var crc16tab = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i) << 8
		for j := 0; j < 8; j++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return t
}()

// crc16tab2 advances the CRC by two bytes at once: for a CRC whose high byte
// was XORed with the first byte into i, crc16tab2[i] is what a byte step
// through crc16tab yields, then the part of the second step that depends on
// i. CRC is linear, so the second byte's own part is a crc16tab lookup
// independent of the first: two lookups that run in parallel.
var crc16tab2 = func() (t [256]uint16) {
	for i := range t {
		x := crc16tab[i]
		t[i] = x<<8 ^ crc16tab[x>>8]
	}
	return t
}()

func crc16(b []byte) uint16 {
	var crc uint16
	for len(b) >= 2 {
		crc = crc16tab2[byte(crc>>8)^b[0]] ^ crc16tab[byte(crc)^b[1]]
		b = b[2:]
	}
	if len(b) == 1 {
		crc = crc<<8 ^ crc16tab[byte(crc>>8)^b[0]]
	}
	return crc
}

// Slot returns the hash slot of key, honouring hash tags: when the key holds
// a '{' followed later by a '}' with at least one byte between them, only
// the bytes between the first '{' and the first '}' after it are hashed.
func Slot(key []byte) int {
	for i, c := range key {
		if c == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					if j > i+1 {
						key = key[i+1 : j]
					}
					return int(crc16(key) & (SlotCount - 1))
				}
			}
			break
		}
	}
	return int(crc16(key) & (SlotCount - 1))
}
