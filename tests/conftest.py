pytest_plugins = ["simfixtures"]
