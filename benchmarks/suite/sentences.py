# ruff: noqa: E501 (one sentence a line reads best)
"""Typical sentences for the embedding benchmark: 32 of them, 10 to 40 tokens
each with [CLS] and [SEP] (all-MiniLM-L6-v2's tokenizer), the kind of text
that search and RAG systems embed."""

SENTENCES = [
    "The cat sat quietly on the warm windowsill.",
    "How do I reset my password if I no longer have access to my email?",
    "Rust guarantees memory safety without a garbage collector.",
    "The meeting has been moved to Thursday afternoon.",
    "Our quarterly revenue grew by twelve percent, driven mainly by strong sales in Europe and Asia.",
    "Please return the signed contract before the end of the week, together with a copy of your identity card and proof of address dated within the last three months.",
    "A light breeze carried the smell of fresh bread down the narrow street.",
    "Which restaurants near the station are open late on Sundays?",
    "The new model reduces inference latency on commodity CPUs by caching attention keys and values.",
    "Store the vegetables in a cool, dry place away from direct sunlight.",
    "She finished the marathon in under four hours despite the heat.",
    "The library will be closed for renovation until the spring; in the meantime, books can be borrowed and returned at the temporary counter in the town hall.",
    "Can you recommend a good introductory book on linear algebra for engineers?",
    "The committee rejected the proposal because the budget estimates were incomplete and several "
    "safety reviews had not been carried out.",
    "Water boils at a lower temperature at high altitude, so pasta takes noticeably longer to cook in a mountain hut than it does at sea level.",
    "Customers can track their orders online at any time, and they receive an email with a tracking link as soon as the parcel leaves our warehouse.",
    "The museum's new exhibition explores the history of navigation, from ancient star charts to "
    "satellite positioning.",
    "I left my umbrella on the train this morning.",
    "Regular exercise improves sleep quality and reduces stress, according to a large study that followed thousands of adults over a period of twelve years.",
    "The software update fixes a bug that caused the application to crash when opening large files.",
    "Tomorrow will be sunny with a few clouds in the evening, but forecasters expect thunderstorms, strong gusts and a sharp drop in temperature by Saturday night.",
    "The bridge was designed to withstand strong earthquakes and hurricane-force winds.",
    "What is the difference between a virus and a bacterium?",
    "He moved to Lisbon to study architecture, and after graduating he spent ten years restoring old tiled buildings in the Alfama district.",
    "Sort the list in ascending order and remove the duplicates before saving it.",
    "The orchestra performed Beethoven's ninth symphony to a sold-out hall.",
    "Battery life depends on screen brightness, network activity and background apps.",
    "The river flooded the lower fields after three days of heavy rain.",
    "Our support team answers most questions within one business day.",
    "The recipe calls for two cups of flour, a pinch of salt and three eggs.",
    "Transformers process all the tokens of a sentence in parallel instead of one at a time.",
    "The train to Berlin departs from platform seven at half past nine.",
]
