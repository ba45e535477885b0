"""What a colleague receives: the afd-export folder and its model card."""
