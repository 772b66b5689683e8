from selfcheck.drivers.card.factory import open_card_reader as open_card_reader
