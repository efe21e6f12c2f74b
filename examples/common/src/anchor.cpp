// Translation unit anchoring the spruce_train static library; the code lives in the sibling files.
namespace train {}
