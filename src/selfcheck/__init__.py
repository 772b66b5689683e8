"""The station app, the drivers, the MQTT contract and the central side, under one name."""
