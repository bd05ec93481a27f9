from freqtrade.strategy import IStrategy
from pandas import DataFrame


class SimProbe(IStrategy):
    """No signals of its own: trades are force-entered; a 5 % stop that rests on the exchange."""

    INTERFACE_VERSION = 3
    can_short = True
    timeframe = "5m"
    stoploss = -0.05
    minimal_roi = {"0": 10}
    startup_candle_count = 0
    process_only_new_candles = True
    order_types = {"entry": "market", "exit": "market", "stoploss": "market", "stoploss_on_exchange": True}

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["enter_long"] = 0
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["exit_long"] = 0
        return dataframe
